// SPDX-License-Identifier: Apache-2.0

package agent

import (
	"sync/atomic"

	"github.com/tollgate-dev/tollgate/policy"
)

// policyState is the policy in force, swapped whole on reload so that a
// statement is judged by one consistent version of it.
type policyState struct {
	cur atomic.Pointer[policyVersion]
}

// policyVersion is one loaded policy.
type policyVersion struct {
	engine *policy.Engine
	hash   string
}

// Current returns the engine in force and its policy's hash.
func (s *policyState) Current() (*policy.Engine, string) {
	v := s.cur.Load()
	return v.engine, v.hash
}

// set puts cfg's rules in force.
func (s *policyState) set(cfg *policy.Config, hash string) {
	s.cur.Store(&policyVersion{engine: policy.NewEngine(cfg), hash: hash})
}
