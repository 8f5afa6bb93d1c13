// SPDX-License-Identifier: Apache-2.0

package audit

// BenchRecord is benchRecord for the external tests (TestBenchRecord).
var BenchRecord = benchRecord
