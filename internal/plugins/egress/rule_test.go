package egress

import (
	"errors"
	"net/netip"
	"strings"
	"testing"
)

func TestParseRule(t *testing.T) {
	tests := []struct {
		pattern   string
		wildcards bool
		want      string // canonical form; "" when an error is expected
		wantErr   string
	}{
		{"api.example.com:443", false, "api.example.com:443", ""},
		{"API.Example.COM.:443", false, "api.example.com:443", ""},
		{"xn--bcher-kva.example:443", false, "xn--bcher-kva.example:443", ""},
		{"localhost:8080", false, "localhost:8080", ""},
		{"*.example.com:443", true, "*.example.com:443", ""},
		{"*.EXAMPLE.com.:443", true, "*.example.com:443", ""},
		{"192.0.2.1:8080", false, "192.0.2.1:8080", ""},
		{"127.0.0.1:5432", false, "127.0.0.1:5432", ""},
		{"[2001:DB8::1]:443", false, "[2001:db8::1]:443", ""},
		{"[::ffff:127.0.0.1]:80", false, "127.0.0.1:80", ""},
		{"169.254.169.254:80", false, "169.254.169.254:80", ""},

		{"*.example.com:443", false, "", "strict level allows no wildcards"},
		{"api.*.com:443", false, "", "strict level allows no wildcards"},
		{"*:443", true, "", "leading \"*.\" label"},
		{"*.com:443", true, "", "at least two labels"},
		{"*example.com:443", true, "", "leading \"*.\" label"},
		{"a*.example.com:443", true, "", "leading \"*.\" label"},
		{"*.*.example.com:443", true, "", "leading \"*.\" label"},
		{"foo.*.com:443", true, "", "leading \"*.\" label"},
		{"*.127.0.0.1:443", true, "", "invalid wildcard domain"},
		{"[*.example.com]:443", true, "", "leading \"*.\" label"},
		{"example.com:*", true, "", "port wildcards are not supported"},
		{"example.com", false, "", "missing port"},
		{"example.com:", false, "", "empty port"},
		{"example.com:0", false, "", "invalid port"},
		{"example.com:0443", false, "", "invalid port"},
		{"example.com:65536", false, "", "invalid port"},
		{"example.com:+443", false, "", "invalid port"},
		{"example.com:44a", false, "", "invalid port"},
		{"2130706433:80", false, "", "non-standard notation"},
		{"0177.0.0.1:80", false, "", "non-standard notation"},
		{"0x7f.1:80", false, "", "non-standard notation"},
		{"127.1:80", false, "", "non-standard notation"},
		{"::1:80", false, "", "brackets"},
		{"[::1:80", false, "", "missing ']'"},
		{"[::1]x:80", false, "", "junk after"},
		{"[fe80::1%eth0]:443", false, "", "zoned"},
		{"[127.0.0.1]:80", false, "", "invalid IPv6"},
		{"0.0.0.0:80", false, "", "can never be dialed"},
		{"224.0.0.1:80", false, "", "can never be dialed"},
		{"255.255.255.255:80", false, "", "can never be dialed"},
		{"[ff02::1]:80", false, "", "can never be dialed"},
		{"bücher.example:443", false, "", "only printable ASCII"},
		{"exa mple.com:443", false, "", "only printable ASCII"},
		{"user@example.com:443", false, "", "invalid host name"},
		{"example..com:443", false, "", "invalid host name"},
		{strings.Repeat("a", 301) + ":443", false, "", "longer than"},
		{":443", false, "", "invalid host name"},
		{"", false, "", "missing port"},
	}
	for _, tt := range tests {
		t.Run(tt.pattern, func(t *testing.T) {
			r, err := ParseRule(tt.pattern, tt.wildcards)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) || !errors.Is(err, ErrInvalidRule) {
					t.Fatalf("ParseRule(%q) = %v, %v; want ErrInvalidRule containing %q", tt.pattern, r, err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("ParseRule(%q): %v", tt.pattern, err)
			}
			if got := r.String(); got != tt.want {
				t.Errorf("ParseRule(%q) = %q, want %q", tt.pattern, got, tt.want)
			}
			if again, err := ParseRule(r.String(), tt.wildcards); err != nil || again != r {
				t.Errorf("round trip of %q: %v, %v", r.String(), again, err)
			}
		})
	}
	if got := (Rule{}).String(); got != "" {
		t.Errorf("zero Rule String = %q", got)
	}
}

func TestRuleMatchName(t *testing.T) {
	wild, _ := ParseRule("*.example.com:443", true)
	exact, _ := ParseRule("example.com:443", false)
	lit, _ := ParseRule("192.0.2.1:443", false)
	tests := []struct {
		rule Rule
		host string
		port uint16
		want bool
	}{
		{wild, "a.example.com", 443, true},
		{wild, "a.b.example.com", 443, true},
		{wild, "example.com", 443, false},
		{wild, "evilexample.com", 443, false},
		{wild, "a.example.com.evil.test", 443, false},
		{wild, "a.example.com", 8443, false},
		{exact, "example.com", 443, true},
		{exact, "a.example.com", 443, false},
		{exact, "example.com", 80, false},
		{lit, "192.0.2.1", 443, false}, // names never match a literal rule
	}
	for _, tt := range tests {
		if got := tt.rule.matchName(tt.host, tt.port); got != tt.want {
			t.Errorf("%s matchName(%s, %d) = %v, want %v", tt.rule, tt.host, tt.port, got, tt.want)
		}
	}
	if !lit.matchIP(netip.MustParseAddr("192.0.2.1"), 443) || lit.matchIP(netip.MustParseAddr("192.0.2.2"), 443) ||
		lit.matchIP(netip.MustParseAddr("192.0.2.1"), 80) || exact.matchIP(netip.MustParseAddr("192.0.2.1"), 443) {
		t.Error("matchIP: wrong result")
	}
}

func TestParseAuthority(t *testing.T) {
	tests := []struct {
		in      string
		defPort uint16
		want    string // hostPort; "" when an error is expected
		wantIP  bool
		wantErr string
	}{
		{"example.com:443", 0, "example.com:443", false, ""},
		{"EXAMPLE.com.:443", 0, "example.com:443", false, ""},
		{"example.com", 80, "example.com:80", false, ""},
		{"127.0.0.1:80", 0, "127.0.0.1:80", true, ""},
		{"[::1]:80", 0, "[::1]:80", true, ""},
		{"[::FFFF:127.0.0.1]:80", 0, "127.0.0.1:80", true, ""},
		{"[::1]", 80, "[::1]:80", true, ""},

		{"example.com", 0, "", false, "missing port"},
		{"", 0, "", false, "empty authority"},
		{"2130706433:80", 0, "", false, "non-standard notation"},
		{"0177.0.0.1:80", 0, "", false, "non-standard notation"},
		{"0x7f.1:80", 0, "", false, "non-standard notation"},
		{"0x7F000001:80", 0, "", false, "non-standard notation"},
		{"127.1:80", 0, "", false, "non-standard notation"},
		{"127.0.0.1.:80", 0, "127.0.0.1:80", true, ""},
		{"::1:80", 0, "", false, "brackets"},
		{"[fe80::1%25eth0]:80", 0, "", false, "not an authority"},
		{"user@example.com:443", 0, "", false, "not an authority"},
		{"example.com:443/x", 0, "", false, "not an authority"},
		{"bücher.example:443", 0, "", false, "non-ASCII"},
		{"exa\x00mple.com:443", 0, "", false, "non-ASCII"},
		{"example.com:99999", 0, "", false, "invalid port"},
		{"*.example.com:443", 0, "", false, "not an authority"},
		{strings.Repeat("a.", 200) + "com:443", 0, "", false, "longer than"},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			tg, err := parseAuthority(tt.in, tt.defPort)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("parseAuthority(%q) = %+v, %v; want error containing %q", tt.in, tg, err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("parseAuthority(%q): %v", tt.in, err)
			}
			if got := tg.hostPort(); got != tt.want || tg.ip.IsValid() != tt.wantIP {
				t.Errorf("parseAuthority(%q) = %s (ip %v), want %s (ip %v)", tt.in, got, tg.ip, tt.want, tt.wantIP)
			}
		})
	}
}

func TestParseAbsolute(t *testing.T) {
	tests := []struct {
		in       string
		want     string // hostPort
		wantPath string
		wantErr  string
	}{
		{"http://example.com/a/b?c=d", "example.com:80", "/a/b?c=d", ""},
		{"HTTP://Example.com:8080", "example.com:8080", "/", ""},
		{"http://example.com?x=1", "example.com:80", "/?x=1", ""},
		{"http://[2001:db8::1]:81/", "[2001:db8::1]:81", "/", ""},

		{"/index.html", "", "", "origin-form"},
		{"*", "", "", "origin-form"},
		{"https://example.com/", "", "", "scheme \"https\" not supported"},
		{"ftp://example.com/", "", "", "scheme \"ftp\" not supported"},
		{"example.com:80", "", "", "not an absolute http:// URL"},
		{"http://user:pw@example.com/", "", "", "not an authority"},
		{"http://example.com/#frag", "", "", "fragment"},
		{"http://example.com//evil/x", "", "", "starts with \"//\""},
		{"http://2130706433/", "", "", "non-standard notation"},
		{"http://bücher.example/", "", "", "non-ASCII"},
		{"http:///path", "", "", "empty authority"},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			tg, path, err := parseAbsolute(tt.in)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("parseAbsolute(%q) = %+v, %q, %v; want error containing %q", tt.in, tg, path, err, tt.wantErr)
				}
				if strings.Contains(err.Error(), "pw") {
					t.Errorf("error %q leaks the URL's credentials", err)
				}
				return
			}
			if err != nil {
				t.Fatalf("parseAbsolute(%q): %v", tt.in, err)
			}
			if tg.hostPort() != tt.want || path != tt.wantPath {
				t.Errorf("parseAbsolute(%q) = %s %q, want %s %q", tt.in, tg.hostPort(), path, tt.want, tt.wantPath)
			}
		})
	}
}

func TestHostHeader(t *testing.T) {
	for in, want := range map[string]string{
		"example.com":      "example.com",
		"example.com:8080": "example.com:8080",
		"[::1]":            "[::1]",
		"[::1]:81":         "[::1]:81",
	} {
		tg, err := parseAuthority(in, 80)
		if err != nil {
			t.Fatal(err)
		}
		if got := tg.hostHeader(); got != want {
			t.Errorf("hostHeader(%s) = %q, want %q", in, got, want)
		}
	}
}
