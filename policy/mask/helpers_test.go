// SPDX-License-Identifier: Apache-2.0

package mask_test

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
)

// Fixture secrets: well-known test values (card networks' test numbers,
// AWS's documentation keys, jwt.io's example), never real ones.
const (
	fxEmail    = "jane.doe+orders@mail.example.com"
	fxVisa     = "4111111111111111"
	fxIBAN     = "DE89370400440532013000"
	fxAWSKey   = "AKIAIOSFODNN7EXAMPLE"
	fxAWSSec   = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
	fxGCPKey   = "AIzaSyDaGmWKa4JsXZ-HjGw7ISLn_3namBGewQe"
	fxAzureKey = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
	fxJWT      = "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiIxMjM0NTY3ODkwIiwibmFtZSI6IkpvaG4gRG9lIiwiaWF0IjoxNTE2MjM5MDIyfQ.SflKxwRJSMeKKF2QT4fwpMeJf36POk6yJV_adQssw5c"
	fxPEM      = "-----BEGIN RSA PRIVATE KEY-----\nMIIBOgIBAAJBAKj34GkxFhD90vcNLYLInFEX6Ppy1tPf9Cnzj4p4WGeKLs1Pt8Qu\nKUpRKfFLfRYC9AIKjbJTWit+CqvjWYzvQwECAwEAAQ==\n-----END RSA PRIVATE KEY-----"
	fxPassword = "s3cr3t-Pa55!"
)

func hmacHex(s string) string {
	h := hmac.New(sha256.New, testKey)
	h.Write([]byte(s))
	return hex.EncodeToString(h.Sum(nil)[:8])
}
