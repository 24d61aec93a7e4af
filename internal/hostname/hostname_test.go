package hostname_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/portcullis/portcullis/internal/hostname"
)

// TestParse: every notation an attacker uses to smuggle an address past
// a check on names (legacy numeric forms, mapped and zoned IPv6, case,
// trailing dots, look-alikes), and what stays allowed.
func TestParse(t *testing.T) {
	for _, tc := range []struct {
		in        string
		bracketed bool
		host      string
		ip        bool
		err       error
	}{
		{"example.com", false, "example.com", false, nil},
		{"EXAMPLE.com.", false, "example.com", false, nil},
		{"xn--bcher-kva.example", false, "xn--bcher-kva.example", false, nil},
		{"_srv.internal", false, "_srv.internal", false, nil},
		{"192.0.2.1", false, "192.0.2.1", true, nil},
		{"192.0.2.1.", false, "192.0.2.1", true, nil},
		{"::1", true, "::1", true, nil},
		{"::FFFF:127.0.0.1", true, "127.0.0.1", true, nil}, // mapped: unmapped
		{"fe80::1%eth0", true, "fe80::1%eth0", true, nil},  // zone kept for the caller
		{"2130706433", false, "", false, hostname.ErrNumeric},
		{"0177.0.0.1", false, "", false, hostname.ErrNumeric},
		{"0x7f.1", false, "", false, hostname.ErrNumeric},
		{"0X7F.0.0.1", false, "", false, hostname.ErrNumeric},
		{"127.1", false, "", false, hostname.ErrNumeric},
		{"127.0.0.01", false, "", false, hostname.ErrNumeric},
		{"foo.0x", false, "", false, hostname.ErrNumeric},
		{"example.123", false, "", false, hostname.ErrNumeric},
		{"::1", false, "", false, hostname.ErrIPv6Unbracketed},
		{"::ffff:127.0.0.1", false, "", false, hostname.ErrIPv6Unbracketed},
		{"127.0.0.1", true, "", false, hostname.ErrIPv6},
		{"example.com", true, "", false, hostname.ErrIPv6},
		{"", false, "", false, hostname.ErrInvalid},
		{".", false, "", false, hostname.ErrInvalid},
		{"a..b", false, "", false, hostname.ErrInvalid},
		{"exa mple.com", false, "", false, hostname.ErrInvalid},
		{"exam%2eple.com", false, "", false, hostname.ErrInvalid},
		{"ехаmple.com", false, "", false, hostname.ErrInvalid}, // Cyrillic look-alikes
		{"example.com..", false, "", false, hostname.ErrInvalid},
		{strings.Repeat("a", 64) + ".com", false, "", false, hostname.ErrInvalid},
		{strings.Repeat("a.", 127) + "co", false, "", false, hostname.ErrInvalid}, // 256 bytes
	} {
		host, ip, err := hostname.Parse(tc.in, tc.bracketed)
		if !errors.Is(err, tc.err) || (err == nil) != (tc.err == nil) {
			t.Errorf("Parse(%q, %v) error %v, want %v", tc.in, tc.bracketed, err, tc.err)
			continue
		}
		if host != tc.host || ip.IsValid() != tc.ip {
			t.Errorf("Parse(%q, %v) = %q, ip %v; want %q, ip %v", tc.in, tc.bracketed, host, ip.IsValid(), tc.host, tc.ip)
		}
	}
}

// TestValidLength: a 253-byte name of 63-byte labels is the longest.
func TestValidLength(t *testing.T) {
	label := strings.Repeat("a", 63)
	name := strings.Join([]string{label, label, label, strings.Repeat("b", 61)}, ".")
	if len(name) != hostname.MaxLen || !hostname.Valid(name) {
		t.Errorf("a %d-byte name is refused", len(name))
	}
	if hostname.Valid(name + "c") {
		t.Errorf("a %d-byte name is accepted", len(name)+1)
	}
}

// TestValidName: a name Parse accepts, never a numeric last label.
func TestValidName(t *testing.T) {
	for h, want := range map[string]bool{"example.com": true, "a-b.c_d": true, "127.1": false, "x.0x7f": false,
		"2130706433": false, "": false, "Example.com": false, "a..b": false} {
		if got := hostname.ValidName(h); got != want {
			t.Errorf("ValidName(%q) = %v, want %v", h, got, want)
		}
	}
}
