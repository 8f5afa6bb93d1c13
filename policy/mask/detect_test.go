// SPDX-License-Identifier: Apache-2.0

package mask

import (
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/tollgate-dev/tollgate/policy"
)

// found returns the values detector d finds in s.
func found(d policy.Detector, s string) []string {
	k := builtinKind(d)
	var out []string
	for _, sp := range mergeSpans(builtins[k].find([]byte(s), scanFlags([]byte(s)), nil)) {
		out = append(out, s[sp.start:sp.end])
	}
	return out
}

// Fixture secrets. They are well-known test values (card networks' test
// numbers, AWS's documentation keys, jwt.io's example), never real ones.
const (
	fxEmail    = "jane.doe+orders@mail.example.com"
	fxVisa     = "4111111111111111"
	fxAmex     = "378282246310005"
	fxIBAN     = "DE89370400440532013000"
	fxAWSKey   = "AKIAIOSFODNN7EXAMPLE"
	fxAWSSec   = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
	fxGCPKey   = "AIzaSyDaGmWKa4JsXZ-HjGw7ISLn_3namBGewQe"
	fxAzureKey = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
	fxJWT      = "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiIxMjM0NTY3ODkwIiwibmFtZSI6IkpvaG4gRG9lIiwiaWF0IjoxNTE2MjM5MDIyfQ.SflKxwRJSMeKKF2QT4fwpMeJf36POk6yJV_adQssw5c"
	fxPEM      = "-----BEGIN RSA PRIVATE KEY-----\nMIIBOgIBAAJBAKj34GkxFhD90vcNLYLInFEX6Ppy1tPf9Cnzj4p4WGeKLs1Pt8Qu\nKUpRKfFLfRYC9AIKjbJTWit+CqvjWYzvQwECAwEAAQ==\n-----END RSA PRIVATE KEY-----"
	fxPassword = "s3cr3t-Pa55!"
)

// benign holds values that no detector may touch: numbers, identifiers,
// UUIDs, timestamps, versions, hashes, prose.
var benign = []string{
	"", "0", "42", "-17", "3.14159265358979", "1e100", "1000000", "99.95", "1,234,567.89",
	"123e4567-e89b-12d3-a456-426614174000", "12345678-1234-1234-1234-123456789012",
	"2024-01-15", "2024-01-15 10:30:45.123456+00", "2024-01-15T10:30:45Z", "10:30:45",
	"1700000000000", "1700000000000000000", "17000000000000000001234", // Unix ms, ns, longer
	"20240115103045123", "+1 (555) 123-4567", "555-123-4567", "00 49 30 1234567",
	"1234 5678 9012 3456", "4111111111111112", "0000000000000000", "5555555555555555",
	"ORD4111111111111111", "4111111111111111x", "41111111111111111111",
	"v1.2.3", "example.com", "user@localhost", "@handle", "mailto:", "a@b",
	"da39a3ee5e6b4b0d3255bfef95601890afd80709", "d41d8cd98f00b204e9800998ecf8427e",
	"de89370400440532013000", "DE89370400440532013001", "XX89370400440532013000",
	"AKIA", "AKIAIOSFODNN7EXAMPL", "xAKIAIOSFODNN7EXAMPLE", "AIDAJQABLZS4A3QDU57Q",
	"AIzaShort", "eyJub3Q6IGFsZyJ9.eyJhIjoxfQ.sig", "eyJhbGciOiJIUzI1NiJ9",
	"-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----", "-----BEGIN PUBLIC KEY-----",
	"password_reset=true", "bypass=1", "secretary=Jane", `{"password": null}`, "passwords: 3",
	"timestamp=2024-01-15T10:30:45Z", "id=42&page=3", "https://example.com/a?b=c#d",
	"The quick brown fox jumps over the lazy dog.", "SELECT * FROM t WHERE a = $1",
	"AccountName=acme;EndpointSuffix=core.windows.net", "key: value", "x == password",
}

func TestBenign(t *testing.T) {
	for _, d := range policy.Detectors() {
		for _, s := range benign {
			if got := found(d, s); len(got) > 0 {
				t.Errorf("%s found %q in %q", d, got, s)
			}
		}
	}
}

func TestDetectors(t *testing.T) {
	for _, tt := range []struct {
		d    policy.Detector
		in   string
		want []string
	}{
		{policy.DetectorEmail, fxEmail, []string{fxEmail}},
		{policy.DetectorEmail, "mail " + fxEmail + ", please.", []string{fxEmail}},
		{policy.DetectorEmail, `{"to":"a.b@c.io","cc":"x_y%z@sub.d-e.org"}`, []string{"a.b@c.io", "x_y%z@sub.d-e.org"}},
		{policy.DetectorEmail, "<.jo@ex.com.>", []string{"jo@ex.com"}},
		{policy.DetectorEmail, "jürgen@bücher.de", []string{"jürgen@bücher.de"}},
		{policy.DetectorEmail, "git@github.com:org/repo", []string{"git@github.com"}},

		{policy.DetectorCardNumber, fxVisa, []string{fxVisa}},
		{policy.DetectorCardNumber, "card 4111 1111 1111 1111 exp 12/29", []string{"4111 1111 1111 1111"}},
		{policy.DetectorCardNumber, "4111-1111-1111-1111", []string{"4111-1111-1111-1111"}},
		{policy.DetectorCardNumber, fxAmex + ";3782 822463 10005", []string{fxAmex, "3782 822463 10005"}},
		{policy.DetectorCardNumber, "5555555555554444 6011111111111117 3530111333300000", []string{"5555555555554444", "6011111111111117", "3530111333300000"}},
		{policy.DetectorCardNumber, "30569309025904,2223003122003222,6200000000000005", []string{"30569309025904", "2223003122003222", "6200000000000005"}},
		{policy.DetectorCardNumber, "4000 0566 5566 5556 123", []string{"4000 0566 5566 5556"}},
		{policy.DetectorCardNumber, `{"pan":"4111111111111111","n":4111111111111111}`, []string{fxVisa, fxVisa}},
		{policy.DetectorCardNumber, "1234 4111111111111111", []string{fxVisa}},
		{policy.DetectorCardNumber, "4111111111111111 4111111111111111", []string{fxVisa, fxVisa}},

		{policy.DetectorIBAN, fxIBAN, []string{fxIBAN}},
		{policy.DetectorIBAN, "IBAN: DE89 3704 0044 0532 0130 00.", []string{"DE89 3704 0044 0532 0130 00"}},
		{policy.DetectorIBAN, "GB82WEST12345698765432 FR1420041010050500013M02606 NL91ABNA0417164300", []string{"GB82WEST12345698765432", "FR1420041010050500013M02606", "NL91ABNA0417164300"}},

		{policy.DetectorAWSAccessKey, fxAWSKey, []string{fxAWSKey}},
		{policy.DetectorAWSAccessKey, "ASIAY34FZKBOKMUTVV7A", []string{"ASIAY34FZKBOKMUTVV7A"}},
		{policy.DetectorAWSAccessKey, fxAWSKey + "," + fxAWSSec + ",x", []string{fxAWSKey, fxAWSSec}},
		{policy.DetectorAWSAccessKey, "aws_secret_access_key = " + fxAWSSec, []string{fxAWSSec}},
		{policy.DetectorAWSAccessKey, `{"SecretAccessKey": "` + fxAWSSec + `"}`, []string{fxAWSSec}},

		{policy.DetectorGCPKey, "key=" + fxGCPKey, []string{fxGCPKey}},
		{policy.DetectorGCPKey, `{"type": "service_account", "private_key_id": "0123456789abcdef0123456789abcdef01234567", "private_key": "-----BEGIN PRIVATE KEY-----\nMIIEv\n-----END PRIVATE KEY-----\n", "client_email": "sa@p.iam.gserviceaccount.com"}`,
			[]string{"0123456789abcdef0123456789abcdef01234567", `-----BEGIN PRIVATE KEY-----\nMIIEv\n-----END PRIVATE KEY-----\n`}},
		{policy.DetectorGCPKey, "GOCSPX-1234567890abcdefghijklmnopqr ya29.a0AfH6SMBx-token_value_here", []string{"GOCSPX-1234567890abcdefghijklmnopqr", "ya29.a0AfH6SMBx-token_value_here"}},

		{policy.DetectorAzureKey, "DefaultEndpointsProtocol=https;AccountName=acme;AccountKey=" + fxAzureKey + ";EndpointSuffix=core.windows.net", []string{fxAzureKey}},
		{policy.DetectorAzureKey, fxAzureKey, []string{fxAzureKey}},
		{policy.DetectorAzureKey, "Endpoint=sb://ns.servicebus.windows.net/;SharedAccessKeyName=root;SharedAccessKey=abcDEF123+/xyz=", []string{"abcDEF123+/xyz="}},
		{policy.DetectorAzureKey, "https://acme.blob.core.windows.net/c/b?sv=2022-11-02&sr=b&sig=abcDEF123%2Bxyz%3D4567890&se=x", []string{"abcDEF123%2Bxyz%3D4567890"}},
		{policy.DetectorAzureKey, "secret: abc8Q~" + strings.Repeat("x", 34), []string{"abc8Q~" + strings.Repeat("x", 34)}},

		{policy.DetectorJWT, fxJWT, []string{fxJWT}},
		{policy.DetectorJWT, "Authorization: Bearer " + fxJWT + ".", []string{fxJWT}},
		{policy.DetectorJWT, "eyJhbGciOiJub25lIn0.eyJzdWIiOiJ4In0.", []string{"eyJhbGciOiJub25lIn0.eyJzdWIiOiJ4In0."}},

		{policy.DetectorPrivateKey, "key:\n" + fxPEM + "\n", []string{fxPEM}},
		{policy.DetectorPrivateKey, `{"k": "-----BEGIN PRIVATE KEY-----\nMIIE\n-----END PRIVATE KEY-----\n"}`, []string{`-----BEGIN PRIVATE KEY-----\nMIIE\n-----END PRIVATE KEY-----`}},
		{policy.DetectorPrivateKey, `{"k": "-----BEGIN OPENSSH PRIVATE KEY-----\nb3Bl", "n": 1}`, []string{`-----BEGIN OPENSSH PRIVATE KEY-----\nb3Bl`}},
		{policy.DetectorPrivateKey, "-----BEGIN EC PRIVATE KEY-----\nMHcC", []string{"-----BEGIN EC PRIVATE KEY-----\nMHcC"}},

		{policy.DetectorPassword, "password=" + fxPassword, []string{fxPassword}},
		{policy.DetectorPassword, "host=db user=app password=" + fxPassword + " sslmode=require", []string{fxPassword}},
		{policy.DetectorPassword, `{"user": "a", "secret": "ab\"cd", "api_key":"k1"}`, []string{`ab\"cd`, "k1"}},
		{policy.DetectorPassword, "PGPASSWORD=x1 DB_PWD: 'y2' client_secret => \"z3\"", []string{"x1", "y2", "z3"}},
		{policy.DetectorPassword, "postgres://app:" + fxPassword + "@db:5432/x", []string{fxPassword}},
		{policy.DetectorPassword, "CREATE ROLE x LOGIN PASSWORD 'it''s'", []string{"it''s"}},
		{policy.DetectorPassword, "PASSWORD\t'ab'", []string{"ab"}},
		{policy.DetectorPassword, "Authorization: Bearer abcdefgh12345678", []string{"abcdefgh12345678"}},
		{policy.DetectorPassword, "spring.datasource.password: hunter2\ntoken=t0k", []string{"hunter2", "t0k"}},
	} {
		got := found(tt.d, tt.in)
		if !slices.Equal(got, tt.want) {
			t.Errorf("%s in %q:\n got %q\nwant %q", tt.d, tt.in, got, tt.want)
		}
	}
}

func TestLuhnAndIBAN(t *testing.T) {
	for _, s := range []string{fxVisa, fxAmex, "5555555555554444", "79927398713"} {
		if !luhn([]byte(s)) {
			t.Errorf("luhn(%s) = false", s)
		}
	}
	if luhn([]byte("4111111111111112")) {
		t.Error("luhn accepts a bad check digit")
	}
	if !ibanMod97([]byte(fxIBAN)) || ibanMod97([]byte("DE89370400440532013001")) {
		t.Error("ibanMod97")
	}
}

func TestCustomPattern(t *testing.T) {
	m, err := New([]policy.Masking{{
		ID: "ssn", Style: policy.MaskRedact,
		Patterns: []policy.Pattern{
			{Name: "ssn", Regex: `\b(?P<value>\d{3}-\d{2}-\d{4})\b`},
			{Name: "ticket", Regex: `TICKET-[0-9]+`},
			{Name: "boundary", Regex: `\b`}, // matches only empty strings: never masks
		},
	}}, "db", Options{})
	if err != nil {
		t.Fatal(err)
	}
	s := m.Session(Subject{})
	got := s.Detect([]byte("ssn: 123-45-6789, TICKET-42; 2024-01-15"))
	want := []Span{{5, 16, "ssn"}, {18, 27, "ticket"}}
	if !slices.Equal(got, want) {
		t.Errorf("Detect = %+v, want %+v", got, want)
	}
}

func TestMergeSpans(t *testing.T) {
	weak := &rule{id: "weak", style: policy.MaskPartial}
	strong := &rule{id: "strong", style: policy.MaskRedact}
	got := mergeSpans([]span{
		{start: 10, end: 20, kind: 1, rule: weak},
		{start: 0, end: 5, kind: 0, rule: weak},
		{start: 15, end: 30, kind: 2, rule: strong},
		{start: 30, end: 31, kind: 3, rule: weak}, // adjacent, not overlapping
		{start: 2, end: 3, kind: 4, rule: strong},
	})
	want := []span{
		{start: 0, end: 5, kind: 4, rule: strong},
		{start: 10, end: 30, kind: 2, rule: strong},
		{start: 30, end: 31, kind: 3, rule: weak},
	}
	if !slices.Equal(got, want) {
		t.Errorf("merge = %+v, want %+v", got, want)
	}
}

func TestIndexFold(t *testing.T) {
	for _, tt := range []struct {
		s, w string
		want int
	}{
		{"xxPassWord", "password", 2}, {"PASSWORD", "password", 0}, {"passwor", "password", -1},
		{"", "a", -1}, {"abc", "", 0}, {"aXbPa", "pa", 3},
	} {
		if got := indexFold([]byte(tt.s), tt.w); got != tt.want {
			t.Errorf("indexFold(%q, %q) = %d, want %d", tt.s, tt.w, got, tt.want)
		}
	}
}

// TestDetectorsLinear runs every detector on adversarial megabytes: one
// case of a keyword's first letter and none of the other, BEGIN lines
// without END lines, unterminated quotes, endless digit runs. A detector
// that rescans the rest of the text per candidate takes minutes here
// instead of milliseconds; the bound is loose for slow, shared machines.
func TestDetectorsLinear(t *testing.T) {
	if testing.Short() {
		t.Skip("megabyte inputs")
	}
	const size = 1 << 20
	var inputs []string
	for _, unit := range []string{
		"s", "p", "a", "A", "S", "e", "-", "=", ":", "@", "1", "1 ", "1-", "\"", "'", "\\",
		"eyJ", "eyJ.", "-----BEGIN PRIVATE KEY-----\"", "-----BEGIN ", "AKIA", "password=\"", "password '",
		"x://", "Q~", "==", "?sig=", "a@", "a.", "DE89 ", "bearer ", "\"private_key\":\"", "accountkey=",
	} {
		inputs = append(inputs, strings.Repeat(unit, size/len(unit)))
	}
	m, err := New([]policy.Masking{{
		ID: "all", Detectors: policy.Detectors(), Style: policy.MaskRedact,
		Patterns: []policy.Pattern{{Name: "ticket", Regex: `TICKET-\d+`}},
	}}, "db", Options{})
	if err != nil {
		t.Fatal(err)
	}
	s := m.Session(Subject{})
	for _, in := range inputs {
		start := time.Now()
		s.detect([]byte(in), nil)
		if el := time.Since(start); el > 5*time.Second || os.Getenv("MASK_TIMES") != "" {
			t.Errorf("%q...: %v for %d bytes", in[:min(len(in), 12)], el, len(in))
		}
	}
}

func TestBuiltinsCoverPolicy(t *testing.T) {
	if len(builtins) != len(policy.Detectors()) {
		t.Fatalf("%d built-in detectors, policy knows %d", len(builtins), len(policy.Detectors()))
	}
	for _, d := range policy.Detectors() {
		if k := builtinKind(d); k < 0 || builtins[k].find == nil {
			t.Errorf("no detector for %q", d)
		}
	}
}
