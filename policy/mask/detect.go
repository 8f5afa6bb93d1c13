// SPDX-License-Identifier: Apache-2.0

package mask

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"regexp"

	"github.com/tollgate-dev/tollgate/policy"
)

// A Span is a sensitive value found in a text: text[Start:End], found by
// the detector or pattern named Detector.
type Span struct {
	Start, End int
	Detector   string
}

// span is a Span as the hot path keeps it: the detector as an index into
// the Masker's kinds and the rule whose style masks it.
type span struct {
	start, end int
	kind       int
	rule       *rule
}

// findFunc appends the spans of one kind of value in b to dst, in any order,
// each with 0 <= start < end <= len(b). f is scanFlags(b): a detector whose
// trigger characters are absent returns at once, which is most of them for
// most values. It must take time linear in len(b) and must not keep b or
// touch the spans already in dst.
type findFunc func(b []byte, f flags, dst []span) []span

// flags are the classes of bytes a text holds.
type flags uint16

const (
	fDigit  flags = 1 << iota
	fUpper        // A-Z
	fAt           // @
	fEq           // =
	fColon        // :
	fTilde        // ~
	fDQuote       // "
	fSQuote       // '
	fDot          // .
	fDash         // -
	fSpace        // space
	fA            // A, which AWS key ids and Google API keys start with
	fG            // G, for GOCSPX-
	fJ            // J, for eyJ
)

// byteFlags maps each byte to its class.
var byteFlags = func() (t [256]flags) {
	for c := '0'; c <= '9'; c++ {
		t[c] = fDigit
	}
	for c := 'A'; c <= 'Z'; c++ {
		t[c] = fUpper
	}
	t['A'] |= fA
	t['G'] |= fG
	t['J'] |= fJ
	for c, f := range map[byte]flags{'@': fAt, '=': fEq, ':': fColon, '~': fTilde, '"': fDQuote, '\'': fSQuote, '.': fDot, '-': fDash, ' ': fSpace} {
		t[c] = f
	}
	return t
}()

// scanFlags returns the classes of the bytes of b.
func scanFlags(b []byte) flags {
	var f flags
	for _, c := range b {
		f |= byteFlags[c]
	}
	return f
}

func (f flags) has(g flags) bool { return f&g == g }

// builtins are the built-in detectors, in the order of policy.Detectors:
// the index of a detector here is its kind.
var builtins = []struct {
	name policy.Detector
	find findFunc
}{
	{policy.DetectorEmail, findEmail},
	{policy.DetectorCardNumber, findCard},
	{policy.DetectorIBAN, findIBAN},
	{policy.DetectorAWSAccessKey, findAWS},
	{policy.DetectorGCPKey, findGCP},
	{policy.DetectorAzureKey, findAzure},
	{policy.DetectorJWT, findJWT},
	{policy.DetectorPrivateKey, findPEM},
	{policy.DetectorPassword, findPassword},
}

// builtinKind returns the kind of a built-in detector, or -1.
func builtinKind(d policy.Detector) int {
	for i, b := range builtins {
		if b.name == d {
			return i
		}
	}
	return -1
}

// Character classes. ASCII only: bytes >= 0x80 belong to none of them,
// unless a function says otherwise.

func isDigit(c byte) bool { return '0' <= c && c <= '9' }
func isUpper(c byte) bool { return 'A' <= c && c <= 'Z' }
func isLower(c byte) bool { return 'a' <= c && c <= 'z' }
func isAlpha(c byte) bool { return isUpper(c) || isLower(c) }
func isAlnum(c byte) bool { return isAlpha(c) || isDigit(c) }

// isWord reports letters, digits and '_': characters that continue an
// identifier, so a number or key glued to them is part of something else.
func isWord(c byte) bool { return isAlnum(c) || c == '_' }

func isB64(c byte) bool    { return isAlnum(c) || c == '+' || c == '/' }
func isB64URL(c byte) bool { return isAlnum(c) || c == '-' || c == '_' }

func lower(c byte) byte {
	if isUpper(c) {
		return c + 'a' - 'A'
	}
	return c
}

// indexFold returns the index of the first occurrence of the lower-case
// ASCII word w in b, ignoring ASCII case, or -1.
func indexFold(b []byte, w string) int {
	f := newFoldFinder(b, w)
	return f.next(0)
}

// A foldFinder finds the occurrences of a lower-case ASCII word in a text,
// ignoring ASCII case, one after the other.
type foldFinder struct {
	b              []byte
	w              string
	lo, up         byte // the cases of w's first byte
	nextLo, nextUp int  // next position of each; -2 not looked for, -1 none
}

func newFoldFinder(b []byte, w string) foldFinder {
	f := foldFinder{b: b, w: w, nextLo: -2, nextUp: -2}
	if w != "" {
		f.lo, f.up = w[0], w[0]
		if isLower(f.lo) {
			f.up = f.lo - ('a' - 'A')
		}
	}
	return f
}

// next returns the index of the first occurrence at or after i, or -1.
// Candidates are found with IndexByte for each case of the first byte, and
// the next position of each case is kept until passed, so a text full of
// one case and empty of the other is scanned once, not once per candidate.
func (f *foldFinder) next(i int) int {
	if f.w == "" {
		return min(i, len(f.b))
	}
	limit := len(f.b) - len(f.w) + 1
	for i < limit {
		if f.nextLo != -1 && f.nextLo < i {
			f.nextLo = indexFrom(f.b[:limit], i, f.lo)
		}
		if f.up == f.lo {
			f.nextUp = f.nextLo
		} else if f.nextUp != -1 && f.nextUp < i {
			f.nextUp = indexFrom(f.b[:limit], i, f.up)
		}
		j := f.nextLo
		if j < 0 || (f.nextUp >= 0 && f.nextUp < j) {
			j = f.nextUp
		}
		if j < 0 {
			return -1
		}
		if hasPrefixFold(f.b[j:], f.w) {
			return j
		}
		i = j + 1
	}
	return -1
}

// indexFrom returns the index of the first c in b at or after i, or -1.
func indexFrom(b []byte, i int, c byte) int {
	if j := bytes.IndexByte(b[i:], c); j >= 0 {
		return i + j
	}
	return -1
}

// hasPrefixFold reports whether b starts with the lower-case ASCII word w,
// ignoring ASCII case.
func hasPrefixFold(b []byte, w string) bool {
	if len(b) < len(w) {
		return false
	}
	for k := 0; k < len(w); k++ {
		if lower(b[k]) != w[k] {
			return false
		}
	}
	return true
}

// hasSuffixFold reports whether b ends with the lower-case ASCII word w,
// ignoring ASCII case.
func hasSuffixFold(b []byte, w string) bool {
	return len(b) >= len(w) && hasPrefixFold(b[len(b)-len(w):], w)
}

// findEmail finds addresses like jane.doe+x@mail.example.com: a local part
// of letters, digits and ._%+-, an '@', and a domain of at least two labels
// whose last is two or more letters. Bytes >= 0x80 count as letters, for
// internationalised addresses. It does not match user@localhost, @handles,
// or addresses in IP-literal form.
func findEmail(b []byte, f flags, dst []span) []span {
	if !f.has(fAt | fDot) {
		return dst
	}
	for off := 0; off < len(b); {
		i := bytes.IndexByte(b[off:], '@')
		if i < 0 {
			break
		}
		at := off + i
		off = at + 1
		s := at
		for s > 0 && isEmailLocal(b[s-1]) {
			s--
		}
		for s < at && b[s] == '.' {
			s++
		}
		if s == at {
			continue
		}
		e := scanDomain(b, at+1)
		if e < 0 {
			continue
		}
		dst = append(dst, span{start: s, end: e})
		off = e
	}
	return dst
}

func isEmailLocal(c byte) bool {
	return isAlnum(c) || c >= 0x80 || c == '.' || c == '_' || c == '%' || c == '+' || c == '-'
}

func isLabel(c byte) bool { return isAlnum(c) || c >= 0x80 || c == '-' }

// scanDomain returns the end of a domain name starting at i with at least
// two labels and an alphabetic top-level label of two or more characters,
// or -1.
func scanDomain(b []byte, i int) int {
	end, labels := -1, 0
	for {
		j := i
		for j < len(b) && isLabel(b[j]) {
			j++
		}
		if j == i || b[i] == '-' || b[j-1] == '-' {
			return end
		}
		labels++
		if labels >= 2 && j-i >= 2 && isTLD(b[i:j]) {
			end = j
		}
		if j+1 < len(b) && b[j] == '.' && isLabel(b[j+1]) {
			i = j + 1
			continue
		}
		return end
	}
}

func isTLD(l []byte) bool {
	for _, c := range l {
		if !isAlpha(c) && c < 0x80 {
			return false
		}
	}
	return true
}

// Card numbers: 13 to 19 digits, possibly in groups split by one kind of
// separator (space or '-'), with a known issuer prefix for the length and
// a valid Luhn check digit.
const (
	cardMin = 13
	cardMax = 19
)

// findCard finds payment card numbers. A number must stand alone: digits
// glued to letters, '_' or a decimal point are part of something else (an
// identifier, a decimal), and runs longer than 19 digits are not split.
// Grouped numbers need groups of 3 to 8 digits, the first of 4 or more, so
// dates, times, phone numbers and UUIDs do not qualify; a number made of
// one repeated digit does not either.
func findCard(b []byte, f flags, dst []span) []span {
	if !f.has(fDigit) || len(b) < cardMin {
		return dst
	}
	for i := 0; i < len(b); {
		if !isDigit(b[i]) {
			i++
			continue
		}
		start := i
		leftOK := start == 0 || !(isWord(b[start-1]) || isDecimalPoint(b, start-1))
		// The run: digit groups joined by one kind of separator.
		var sep byte
		j := i
		for {
			for j < len(b) && isDigit(b[j]) {
				j++
			}
			if j+1 < len(b) && (b[j] == ' ' || b[j] == '-') && (sep == 0 || sep == b[j]) && isDigit(b[j+1]) {
				sep = b[j]
				j++
				continue
			}
			break
		}
		end := j
		i = end
		rightOK := end == len(b) || !(isWord(b[end]) || isDecimalPoint(b, end))
		// Windows of whole groups, from each group start, longest first.
		for g := start; g < end; {
			e := cardWindow(b, g, end, g == start && !leftOK, !rightOK)
			if e > 0 {
				dst = append(dst, span{start: g, end: e})
				g = e + 1
				continue
			}
			// Next group.
			for g < end && isDigit(b[g]) {
				g++
			}
			g++
		}
	}
	return dst
}

// isDecimalPoint reports whether b[i] is a '.' between digits. A ',' is
// not one: lists of card numbers are comma-separated far more often than
// a 13-digit fraction is written with a decimal comma.
func isDecimalPoint(b []byte, i int) bool {
	return b[i] == '.' && i > 0 && i+1 < len(b) && isDigit(b[i-1]) && isDigit(b[i+1])
}

// cardWindow returns the end of the longest valid card number made of the
// whole groups of b[g:end] starting at g, or -1. badLeft means the run's
// start is not a boundary (so no window may start there); badRight the
// same for the run's end.
func cardWindow(b []byte, g, end int, badLeft, badRight bool) int {
	if badLeft {
		return -1
	}
	var digits [cardMax]byte
	n, groups, best := 0, 0, -1
	for p := g; p < end; {
		q := p
		for q < end && isDigit(b[q]) {
			q++
		}
		l := q - p
		if n+l > cardMax {
			break
		}
		copy(digits[n:], b[p:q])
		n += l
		groups++
		if groups > 1 && (l < 3 || l > 8) {
			break
		}
		if n >= cardMin && !(q == end && badRight) && groupsOK(b, g, q) && validCard(digits[:n]) {
			best = q
		}
		p = q + 1
	}
	return best
}

// groupsOK reports whether the groups of b[g:q] have a card's shape: one
// group, or groups of 3 to 8 digits with a first of 4 or more.
func groupsOK(b []byte, g, q int) bool {
	first := g
	for first < q && isDigit(b[first]) {
		first++
	}
	if first == q {
		return true
	}
	return first-g >= 4 && first-g <= 8
}

// validCard checks an issuer prefix that fits the length, the Luhn check
// digit and that the digits are not all the same.
func validCard(d []byte) bool {
	same := true
	for _, c := range d[1:] {
		if c != d[0] {
			same = false
			break
		}
	}
	return !same && issuerOK(d) && luhn(d)
}

// issuerOK reports whether d starts with the issuer identification number
// of a card network that issues numbers of len(d) digits. 1xxx (airlines,
// and every Unix timestamp in milliseconds or nanoseconds), 7, 8 and 9 are
// not card networks.
func issuerOK(d []byte) bool {
	n := len(d)
	p2 := int(d[0]-'0')*10 + int(d[1]-'0')
	p3 := p2*10 + int(d[2]-'0')
	p4 := p3*10 + int(d[3]-'0')
	switch {
	case d[0] == '4': // Visa
		return n == 13 || n == 16 || n == 19
	case p2 >= 51 && p2 <= 55, p4 >= 2221 && p4 <= 2720: // Mastercard
		return n == 16
	case p4 >= 2200 && p4 <= 2204: // Mir
		return n >= 16
	case p2 == 34 || p2 == 37: // American Express
		return n == 15
	case p3 >= 300 && p3 <= 305, p2 == 36, p2 == 38, p2 == 39: // Diners Club
		return n >= 14
	case p4 >= 3528 && p4 <= 3589: // JCB
		return n >= 16
	case p2 == 50, p2 >= 56 && p2 <= 69: // Maestro, Discover, UnionPay, RuPay
		return true
	}
	return false
}

func luhn(d []byte) bool {
	sum := 0
	double := false
	for i := len(d) - 1; i >= 0; i-- {
		v := int(d[i] - '0')
		if double {
			v *= 2
			if v > 9 {
				v -= 9
			}
		}
		sum += v
		double = !double
	}
	return sum%10 == 0
}

// ibanLen is the IBAN length of each country, indexed by its two letters.
var ibanLen = func() (t [26 * 26]uint8) {
	const list = "AD24AE23AL28AT20AZ28BA20BE16BG22BH22BI27BR29BY28CH21CR22CY28CZ24DE22DJ27DK18DO28" +
		"EE20EG29ES24FI18FK18FO18FR27GB22GE22GI23GL18GR27GT28HN28HR21HU28IE22IL23IQ23IS26IT27" +
		"JO30KW30KZ20LB28LC32LI21LT20LU20LV21LY25MC27MD24ME22MK19MN20MR27MT31MU30NI28NL18NO15" +
		"OM23PK24PL28PS29PT25QA29RO24RS22RU33SA24SC31SD18SE24SI19SK24SM27SO23ST25SV28TL23TN24" +
		"TR26UA29VA22VG24XK20YE30"
	for i := 0; i < len(list); i += 4 {
		t[int(list[i]-'A')*26+int(list[i+1]-'A')] = (list[i+2]-'0')*10 + list[i+3] - '0'
	}
	return t
}()

// findIBAN finds IBANs in electronic form (DE89370400440532013000) or
// printed in groups of four (DE89 3704 0044 0532 0130 00): a known country
// code, the length that country uses, and the mod-97 check. Upper case
// only, as the standard writes them: lower-case hex identifiers of an
// IBAN's length would otherwise pass one time in 97.
func findIBAN(b []byte, f flags, dst []span) []span {
	if !f.has(fDigit|fUpper) || len(b) < 15 {
		return dst
	}
	for i := 0; i+4 <= len(b); i++ {
		if !isUpper(b[i]) || !isUpper(b[i+1]) || !isDigit(b[i+2]) || !isDigit(b[i+3]) || (i > 0 && isAlnum(b[i-1])) {
			continue
		}
		want := int(ibanLen[int(b[i]-'A')*26+int(b[i+1]-'A')])
		if want == 0 {
			continue
		}
		var chars [34]byte
		n, j := 0, i
		for j < len(b) && n < want {
			c := b[j]
			switch {
			case isDigit(c) || isUpper(c):
				chars[n] = c
				n++
				j++
				continue
			case c == ' ' && n%4 == 0 && n > 0 && j+1 < len(b) && isAlnum(b[j+1]):
				j++
				continue
			}
			break
		}
		if n != want || (j < len(b) && isAlnum(b[j])) || !ibanMod97(chars[:n]) {
			continue
		}
		dst = append(dst, span{start: i, end: j})
		i = j - 1
	}
	return dst
}

// ibanMod97 checks an IBAN's check digits: moved to the end, letters as
// 10 to 35, the number mod 97 is 1.
func ibanMod97(s []byte) bool {
	r := 0
	add := func(c byte) {
		if isDigit(c) {
			r = (r*10 + int(c-'0')) % 97
		} else {
			r = (r*100 + int(c-'A') + 10) % 97
		}
	}
	for _, c := range s[4:] {
		add(c)
	}
	for _, c := range s[:4] {
		add(c)
	}
	return r == 1
}

// awsKeyPrefixes start AWS access key ids: long-term (AKIA), temporary
// (ASIA), and the Bedrock/CloudCommerce variants. The other A??A ids (AIDA
// users, AROA roles...) name things and are not secrets.
var awsKeyPrefixes = []string{"AKIA", "ASIA", "ABIA", "ACCA"}

// awsSecretLabel finds a secret access key written next to its name, as in
// credentials files, environment dumps and JSON.
var awsSecretLabel = regexp.MustCompile(`(?i)(?:aws_?)?secret_?(?:access_?)?key["']?\s*(?:=>|[:=])\s*["']?([A-Za-z0-9/+]{40})(?:[^A-Za-z0-9/+=]|$)`)

// findAWS finds AWS access key ids (AKIA and ASIA followed by 16 upper-case
// letters and digits) and secret access keys: 40 base64 characters within
// 64 bytes of a key id (the pair in a CSV, a config or a message), or
// labelled aws_secret_access_key, SecretAccessKey and the like. A lone
// 40-character token is not enough: git hashes and other ids have that
// length.
func findAWS(b []byte, f flags, dst []span) []span {
	if len(b) < 20 {
		return dst
	}
	for off := 0; off+20 <= len(b) && f.has(fA); {
		i := bytes.IndexByte(b[off:], 'A')
		if i < 0 {
			break
		}
		k := off + i
		off = k + 1
		if k+20 > len(b) || !awsKeyPrefix(b[k:k+4]) || (k > 0 && isAlnum(b[k-1])) {
			continue
		}
		e := k + 4
		for e < k+20 && (isUpper(b[e]) || isDigit(b[e])) {
			e++
		}
		if e != k+20 || (e < len(b) && isAlnum(b[e])) {
			continue
		}
		dst = append(dst, span{start: k, end: e})
		off = e
		if s, t := awsSecretNear(b, max(0, k-64), k); s >= 0 {
			dst = append(dst, span{start: s, end: t})
		}
		if s, t := awsSecretNear(b, e, min(len(b), e+64)); s >= 0 {
			dst = append(dst, span{start: s, end: t})
			off = t
		}
	}
	if f&(fEq|fColon) != 0 && indexFold(b, "secret") >= 0 {
		for _, m := range awsSecretLabel.FindAllSubmatchIndex(b, -1) {
			dst = append(dst, span{start: m[2], end: m[3]})
		}
	}
	return dst
}

func awsKeyPrefix(p []byte) bool {
	for _, k := range awsKeyPrefixes {
		if string(p) == k {
			return true
		}
	}
	return false
}

// awsSecretNear finds a secret access key starting in b[from:to], next to
// a key id: a standalone run of exactly 40 base64 characters with upper
// and lower case letters.
func awsSecretNear(b []byte, from, to int) (int, int) {
	for s := from; s < to; s++ {
		if !isB64(b[s]) || (s > 0 && isB64(b[s-1])) {
			continue
		}
		e := s
		for e < len(b) && isB64(b[e]) {
			e++
		}
		if e-s == 40 && (e == len(b) || b[e] != '=') && mixedCase(b[s:e]) {
			return s, e
		}
		s = e
	}
	return -1, -1
}

func mixedCase(b []byte) bool {
	var up, lo bool
	for _, c := range b {
		up = up || isUpper(c)
		lo = lo || isLower(c)
	}
	return up && lo
}

// findGCP finds Google credentials: API keys (AIza and 35 more characters),
// OAuth client secrets (GOCSPX-...), OAuth access tokens (ya29....), and in
// a service-account key file the values of "private_key_id" and
// "private_key".
func findGCP(b []byte, f flags, dst []span) []span {
	if len(b) < 13 {
		return dst
	}
	if f.has(fA) {
		dst = findPrefixed(b, dst, "AIza", 35, 35, isB64URL)
	}
	if f.has(fG | fDash) {
		dst = findPrefixed(b, dst, "GOCSPX-", 28, 28, isB64URL)
	}
	if f.has(fDot | fDigit) {
		dst = findPrefixed(b, dst, "ya29.", 20, 4096, isB64URL)
	}
	if !f.has(fDQuote | fColon) {
		return dst
	}
	for _, key := range []string{`"private_key_id"`, `"private_key"`} {
		for off := 0; ; {
			i := bytes.Index(b[off:], []byte(key))
			if i < 0 {
				break
			}
			k := off + i + len(key)
			off = k
			if s, e := jsonStringValue(b, k); e > s {
				dst = append(dst, span{start: s, end: e})
				off = e
			}
		}
	}
	return dst
}

// jsonStringValue returns the contents of the JSON string that is the value
// after a key ending at i (`: "..."`), or -1, -1. An unterminated string
// runs to the end of b.
func jsonStringValue(b []byte, i int) (int, int) {
	i = skipSpace(b, i)
	if i >= len(b) || b[i] != ':' {
		return -1, -1
	}
	i = skipSpace(b, i+1)
	if i >= len(b) || b[i] != '"' {
		return -1, -1
	}
	return i + 1, quotedEnd(b, i+1, '"')
}

func skipSpace(b []byte, i int) int {
	for i < len(b) && (b[i] == ' ' || b[i] == '\t' || b[i] == '\n' || b[i] == '\r') {
		i++
	}
	return i
}

// quotedEnd returns the index of the closing quote q of a string whose
// contents start at i, skipping backslash escapes, or len(b).
func quotedEnd(b []byte, i int, q byte) int {
	for i < len(b) {
		switch b[i] {
		case '\\':
			i += 2
			continue
		case q:
			return i
		}
		i++
	}
	return len(b)
}

// findPrefixed finds prefix followed by minN to maxN characters of class
// ok, standing alone (no word character before, none of class ok after).
func findPrefixed(b []byte, dst []span, prefix string, minN, maxN int, ok func(byte) bool) []span {
	for off := 0; ; {
		i := bytes.Index(b[off:], []byte(prefix))
		if i < 0 {
			return dst
		}
		s := off + i
		off = s + 1
		if s > 0 && (isWord(b[s-1]) || ok(b[s-1])) {
			continue
		}
		e := s + len(prefix)
		for e < len(b) && e-s-len(prefix) < maxN && ok(b[e]) {
			e++
		}
		if n := e - s - len(prefix); n < minN || (e < len(b) && ok(b[e])) {
			continue
		}
		dst = append(dst, span{start: s, end: e})
		off = e
	}
}

// azureLabels name the secret parts of Azure connection strings.
var azureLabels = []string{"accountkey=", "sharedaccesskey=", "sharedaccesssignature="}

// findAzure finds Azure secrets: the values of AccountKey=,
// SharedAccessKey= and SharedAccessSignature= in connection strings (the
// rest of the string, like AccountName, is left), the sig= of SAS URLs,
// standalone storage account keys (86 base64 characters and "=="), and
// Entra ID client secrets (three characters, a digit, "Q~", 31 to 34
// more).
func findAzure(b []byte, f flags, dst []span) []span {
	if f.has(fTilde) {
		dst = findEntraSecret(b, dst)
	}
	if !f.has(fEq) {
		return dst
	}
	for _, l := range azureLabels {
		ff := newFoldFinder(b, l)
		for off := 0; ; {
			ls := ff.next(off)
			if ls < 0 {
				break
			}
			s := ls + len(l)
			off = s
			if ls > 0 && isAlnum(b[ls-1]) {
				continue
			}
			e := s
			for e < len(b) && b[e] != ';' && b[e] != '"' && b[e] != '\'' && !isSpace(b[e]) {
				e++
			}
			if e > s {
				dst = append(dst, span{start: s, end: e})
				off = e
			}
		}
	}
	for off := 0; ; {
		i := bytes.Index(b[off:], []byte("sig="))
		if i < 0 {
			break
		}
		s := off + i + 4
		off = s
		if s-4 == 0 || (b[s-5] != '?' && b[s-5] != '&') {
			continue
		}
		e := s
		for e < len(b) && (isB64(b[e]) || b[e] == '%' || b[e] == '=') {
			e++
		}
		if e-s >= 16 {
			dst = append(dst, span{start: s, end: e})
			off = e
		}
	}
	for off := 0; ; {
		i := bytes.Index(b[off:], []byte("=="))
		if i < 0 {
			break
		}
		e := off + i + 2
		off = e
		s := e - 88
		if s < 0 || (s > 0 && isB64(b[s-1])) || (e < len(b) && (isB64(b[e]) || b[e] == '=')) {
			continue
		}
		all := true
		for _, c := range b[s : e-2] {
			if !isB64(c) {
				all = false
				break
			}
		}
		if all {
			dst = append(dst, span{start: s, end: e})
		}
	}
	return dst
}

// findEntraSecret finds Entra ID client secrets: three characters, a
// digit, "Q~", and 31 to 34 more.
func findEntraSecret(b []byte, dst []span) []span {
	for off := 0; ; {
		i := bytes.Index(b[off:], []byte("Q~"))
		if i < 0 {
			break
		}
		q := off + i
		off = q + 2
		s := q - 4
		if s < 0 || !isDigit(b[q-1]) || (s > 0 && isEntraSecret(b[s-1])) {
			continue
		}
		ok := true
		for _, c := range b[s : q-1] {
			ok = ok && isEntraSecret(c)
		}
		e := q + 2
		for e < len(b) && isEntraSecret(b[e]) {
			e++
		}
		if n := e - q - 2; ok && n >= 31 && n <= 34 {
			dst = append(dst, span{start: s, end: e})
			off = e
		}
	}
	return dst
}

func isEntraSecret(c byte) bool { return isAlnum(c) || c == '_' || c == '~' || c == '.' || c == '-' }

func isSpace(c byte) bool {
	return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v'
}

// findJWT finds JSON Web Tokens: base64url segments joined by dots, three
// (JWS) or five (JWE), whose first segment decodes to a JSON object with an
// "alg" member. Other dotted base64 (version strings, hostnames) does not
// start with an encoded JSON header.
func findJWT(b []byte, f flags, dst []span) []span {
	if !f.has(fJ | fDot) {
		return dst
	}
	for off := 0; ; {
		i := bytes.Index(b[off:], []byte("eyJ"))
		if i < 0 {
			return dst
		}
		s := off + i
		off = s + 1
		if s > 0 && (isB64URL(b[s-1]) || b[s-1] == '.') {
			continue
		}
		// Segment ends: ends[k] is the end of segment k.
		var ends [5]int
		n, e := 0, s
		for n < 5 {
			for e < len(b) && isB64URL(b[e]) {
				e++
			}
			ends[n] = e
			n++
			if e < len(b) && b[e] == '.' && n < 5 {
				e++
				continue
			}
			break
		}
		end := -1
		switch {
		case n == 5:
			end = ends[4]
		case n >= 3:
			end = ends[2]
		}
		if end < 0 || !jwtHeader(b[s:ends[0]]) {
			continue
		}
		dst = append(dst, span{start: s, end: end})
		off = end
	}
}

// jwtHeader reports whether seg is base64url of a JSON object with "alg".
func jwtHeader(seg []byte) bool {
	var buf [512]byte
	if base64.RawURLEncoding.DecodedLen(len(seg)) > len(buf) {
		return false
	}
	n, err := base64.RawURLEncoding.Decode(buf[:], seg)
	h := buf[:n]
	return err == nil && n > 0 && h[0] == '{' && bytes.Contains(h, []byte(`"alg"`)) && json.Valid(h)
}

// findPEM finds PEM private keys, "-----BEGIN ... PRIVATE KEY-----" through
// the matching END line, with real newlines or JSON-escaped ones. A key
// without its END line (cut short) is masked to the end of the value or of
// the JSON string it is in. Certificates and public keys are not secrets
// and are left alone.
func findPEM(b []byte, f flags, dst []span) []span {
	const begin, end, dashes = "-----BEGIN ", "-----END ", "-----"
	if !f.has(fDash|fUpper|fSpace) || len(b) < len(begin)+len("PRIVATE KEY")+len(dashes) {
		return dst
	}
	// nextEnd is the next END line at or after the current key's body, kept
	// across keys so that many BEGIN lines without END lines do not each
	// search the rest of b.
	nextEnd := -2
	for off := 0; ; {
		i := bytes.Index(b[off:], []byte(begin))
		if i < 0 {
			return dst
		}
		s := off + i
		off = s + len(begin)
		l := off
		for l < len(b) && l-off < 64 && (isUpper(b[l]) || isDigit(b[l]) || b[l] == ' ') {
			l++
		}
		label := b[off:l]
		if !bytes.HasPrefix(b[l:], []byte(dashes)) || !bytes.Contains(label, []byte("PRIVATE KEY")) {
			continue
		}
		body := l + len(dashes)
		e := -1
		if nextEnd != -1 && nextEnd < body {
			nextEnd = -1
			if j := bytes.Index(b[body:], []byte(end)); j >= 0 {
				nextEnd = body + j
			}
		}
		if nextEnd >= 0 {
			k := nextEnd + len(end)
			if bytes.HasPrefix(b[k:], label) && bytes.HasPrefix(b[k+len(label):], []byte(dashes)) {
				e = k + len(label) + len(dashes)
			}
		}
		if e < 0 {
			// Cut short: to the end of the value, or of the JSON string.
			e = body
			for e < len(b) && b[e] != '"' {
				if b[e] == '\\' {
					e++
				}
				e++
			}
			e = min(e, len(b))
		}
		dst = append(dst, span{start: s, end: e})
		off = e
	}
}

// passwordKeys end the names of keys whose values are secrets:
// db_password, PGPASSWORD, client_secret, x-api-key, "accessToken".
var passwordKeys = []string{
	"password", "passwd", "passphrase", "pwd", "secret",
	"apikey", "api_key", "api-key", "accesskey", "access_key", "access-key",
	"privatekey", "private_key", "private-key",
	"authtoken", "auth_token", "auth-token", "accesstoken", "access_token", "access-token",
	"refreshtoken", "refresh_token", "refresh-token", "credential", "credentials",
}

// passwordExactKeys are secret only as the whole key: "bypass" and
// "next_token" are not.
var passwordExactKeys = []string{"pass", "pw", "token"}

// findPassword finds the values of password-like settings: key=value,
// key: value, "key": "value", key => value, where the key ends with
// password, secret, api_key, access_token and the like (any case); the
// password of URLs (scheme://user:password@host); PASSWORD 'literal' in
// SQL; and Bearer tokens. Only the value is masked, not the key. Values
// are quoted strings (escapes honoured) or run to whitespace, ';', ',',
// '&' or a closing bracket. null, true and false are not secrets.
func findPassword(b []byte, f flags, dst []span) []span {
	for i := 0; i < len(b) && f&(fEq|fColon) != 0; i++ {
		c := b[i]
		if c != '=' && c != ':' {
			continue
		}
		if c == ':' && i+2 < len(b) && b[i+1] == '/' && b[i+2] == '/' {
			if s, e := urlPassword(b, i+3); e > s {
				dst = append(dst, span{start: s, end: e})
				i = e
			}
			continue
		}
		if !secretKeyBefore(b, i) {
			continue
		}
		v := i + 1
		switch {
		case c == '=' && v < len(b) && b[v] == '>':
			v++
		case c == '=' && v < len(b) && b[v] == '=':
			continue // a comparison, not a setting
		case c == ':' && v < len(b) && b[v] == '=':
			v++
		}
		if s, e := settingValue(b, v); e > s {
			dst = append(dst, span{start: s, end: e})
			i = e
		}
	}
	// PASSWORD 'x' (CREATE ROLE, ALTER USER) and Bearer tokens.
	ff := newFoldFinder(b, "password")
	for off := 0; f.has(fSQuote); {
		i := ff.next(off)
		if i < 0 {
			break
		}
		k := i + len("password")
		off = k
		j := k
		for j < len(b) && (b[j] == ' ' || b[j] == '\t' || b[j] == '\n') {
			j++
		}
		if j == k || j >= len(b) || b[j] != '\'' {
			continue
		}
		e := sqlStringEnd(b, j+1)
		if e > j+1 {
			dst = append(dst, span{start: j + 1, end: e})
			off = e
		}
	}
	ff = newFoldFinder(b, "bearer ")
	for off := 0; f.has(fSpace) && len(b) >= len("bearer ")+8; {
		ls := ff.next(off)
		if ls < 0 {
			break
		}
		s := ls + len("bearer ")
		off = s
		if ls > 0 && isWord(b[ls-1]) {
			continue
		}
		e := s
		for e < len(b) && (isB64URL(b[e]) || b[e] == '.' || b[e] == '~' || b[e] == '+' || b[e] == '/' || b[e] == '=') {
			e++
		}
		if e-s >= 8 {
			dst = append(dst, span{start: s, end: e})
			off = e
		}
	}
	return dst
}

// secretKeyBefore reports whether the separator at i follows a secret key
// name: optional spaces, an optional closing quote, and a key of letters,
// digits, '_', '-' and '.' ending with one of passwordKeys.
func secretKeyBefore(b []byte, i int) bool {
	e := i
	for e > 0 && (b[e-1] == ' ' || b[e-1] == '\t') && i-e < 8 {
		e--
	}
	if e > 0 && (b[e-1] == '"' || b[e-1] == '\'') {
		e--
	}
	s := e
	for s > 0 && e-s < 64 && (isWord(b[s-1]) || b[s-1] == '-' || b[s-1] == '.') {
		s--
	}
	if s == e {
		return false
	}
	key := b[s:e]
	for _, k := range passwordKeys {
		if hasSuffixFold(key, k) {
			return true
		}
	}
	for _, k := range passwordExactKeys {
		if len(key) == len(k) && hasPrefixFold(key, k) {
			return true
		}
	}
	return false
}

// settingValue returns the value of a setting starting at i (after the
// separator), without its quotes, or -1, -1.
func settingValue(b []byte, i int) (int, int) {
	for i < len(b) && (b[i] == ' ' || b[i] == '\t') {
		i++
	}
	if i >= len(b) {
		return -1, -1
	}
	switch b[i] {
	case '"', '\'':
		return i + 1, quotedEnd(b, i+1, b[i])
	case '{', '[', '\n', '\r':
		return -1, -1
	}
	e := i
	for e < len(b) && !isSpace(b[e]) && !bytes.ContainsRune([]byte(";,&\"'}])<>"), rune(b[e])) {
		e++
	}
	switch string(b[i:e]) {
	case "null", "true", "false", "NULL":
		return -1, -1
	}
	return i, e
}

// urlPassword returns the password of a URL's userinfo, for a URL whose
// authority starts at i (after "://"), or -1, -1.
func urlPassword(b []byte, i int) (int, int) {
	colon := -1
	for j := i; j < len(b); j++ {
		switch c := b[j]; {
		case c == '@':
			if colon < 0 {
				return -1, -1
			}
			return colon + 1, j
		case c == ':' && colon < 0:
			colon = j
		case c == '/' || c == '?' || c == '#' || isSpace(c) || c == '"' || c == '\'':
			return -1, -1
		}
	}
	return -1, -1
}

// sqlStringEnd returns the end of an SQL string literal's contents starting
// at i (a doubled quote is a quote inside), or len(b).
func sqlStringEnd(b []byte, i int) int {
	for i < len(b) {
		if b[i] == '\'' {
			if i+1 < len(b) && b[i+1] == '\'' {
				i += 2
				continue
			}
			return i
		}
		i++
	}
	return len(b)
}

// regexBatch is how many matches of a custom pattern are asked for at a
// time, so a pattern that matches everywhere does not build one slice per
// match of a huge value at once.
const regexBatch = 256

// regexFinder makes a custom pattern's findFunc. Only the group named
// "value" is masked when the expression has one; empty matches are
// skipped.
func regexFinder(re *regexp.Regexp) findFunc {
	group := re.SubexpIndex("value")
	prefix, _ := re.LiteralPrefix()
	return func(b []byte, _ flags, dst []span) []span {
		if prefix != "" && !bytes.Contains(b, []byte(prefix)) {
			return dst
		}
		// A batch after the first starts a new search where the last match
		// ended, which sees that position as the start of the text: \b or ^
		// may then match there. That can only mask more.
		for pos := 0; pos <= len(b); {
			ms := re.FindAllSubmatchIndex(b[pos:], regexBatch)
			for _, m := range ms {
				s, e := m[0], m[1]
				if group > 0 {
					s, e = m[2*group], m[2*group+1]
				}
				if s >= 0 && e > s {
					dst = append(dst, span{start: pos + s, end: pos + e})
				}
			}
			if len(ms) < regexBatch {
				break
			}
			last := ms[len(ms)-1]
			pos += max(last[1], last[0]+1)
		}
		return dst
	}
}
