// Package hostname parses the host of a URL or of a proxy request the one
// way every outbound path of Portcullis does (the http_fetch tool and the
// egress proxy of sandboxed servers), so that a fix to what counts as an
// IP address or a valid name lands in both at once.
//
// The rules: an IPv6 literal must be bracketed; an IPv4 literal must be
// strict dotted decimal (netip.ParseAddr: four decimal fields, no leading
// zeros); a name must be an ASCII DNS name (international names in their
// xn-- A-label form) whose last label is not numeric. A name whose last
// label is all digits or 0x-hex is what the WHATWG URL standard ("ends in
// a number") and inet_aton(3) read as an IPv4 address (2130706433,
// 0177.0.0.1, 0x7f.1, 127.1): such hosts are refused outright, so that no
// resolver (in particular the cgo one, which hands the name to
// getaddrinfo) can turn them into an address behind an address check.
package hostname

import (
	"errors"
	"net/netip"
	"strings"
)

// Errors of Parse.
var (
	ErrIPv6            = errors.New("invalid IPv6 address")
	ErrIPv6Unbracketed = errors.New("IPv6 addresses must be in brackets")
	ErrNumeric         = errors.New("numeric host in a non-standard notation (use dotted decimal)")
	ErrInvalid         = errors.New("invalid host name")
)

// MaxLen is the longest name Valid accepts, in bytes (RFC 1035 §2.3.4,
// without the trailing dot).
const MaxLen = 253

// Parse normalises h, the host with its brackets removed (bracketed says
// whether it had them): it is lower-cased and one trailing dot removed.
// It returns the canonical host (a lower-case name, or netip's form of an
// IP literal with IPv4-mapped IPv6 unmapped) and, for an IP literal, the
// address. An IPv6 zone is kept for the caller to refuse. Errors are
// ErrIPv6, ErrIPv6Unbracketed, ErrNumeric or ErrInvalid.
func Parse(h string, bracketed bool) (string, netip.Addr, error) {
	h = strings.ToLower(h)
	if bracketed {
		a, err := netip.ParseAddr(h)
		if err != nil || !a.Is6() {
			return "", netip.Addr{}, ErrIPv6
		}
		a = a.Unmap()
		return a.String(), a, nil
	}
	h = strings.TrimSuffix(h, ".")
	if a, err := netip.ParseAddr(h); err == nil {
		if !a.Is4() {
			return "", netip.Addr{}, ErrIPv6Unbracketed
		}
		return a.String(), a, nil
	}
	if EndsInNumber(h) {
		return "", netip.Addr{}, ErrNumeric
	}
	if !Valid(h) {
		return "", netip.Addr{}, ErrInvalid
	}
	return h, netip.Addr{}, nil
}

// EndsInNumber reports whether the last label of h (one trailing dot
// already removed) is all decimal digits or "0x" followed by hex digits:
// the WHATWG URL standard's "ends in a number" test, which makes the whole
// host an IPv4 address in browsers and inet_aton.
func EndsInNumber(h string) bool {
	last := h
	if i := strings.LastIndexByte(h, '.'); i >= 0 {
		last = h[i+1:]
	}
	if last == "" {
		return false
	}
	ok := isDigit
	if rest, hex := strings.CutPrefix(last, "0x"); hex {
		last, ok = rest, isHex
	}
	for i := 0; i < len(last); i++ {
		if !ok(last[i]) {
			return false
		}
	}
	return true
}

// Valid reports whether h (lower case, no trailing dot) is an ASCII DNS
// name: at most MaxLen bytes, labels of 1-63 bytes from [a-z0-9_-].
// Unicode look-alikes are refused; international names must be given as
// A-labels (xn--).
func Valid(h string) bool {
	if h == "" || len(h) > MaxLen {
		return false
	}
	for l := range strings.SplitSeq(h, ".") {
		if l == "" || len(l) > 63 {
			return false
		}
		for i := 0; i < len(l); i++ {
			c := l[i]
			if !(c >= 'a' && c <= 'z' || isDigit(c) || c == '-' || c == '_') {
				return false
			}
		}
	}
	return true
}

// ValidName reports whether h (lower case, no trailing dot) is a name
// Parse accepts: Valid and not ending in a number.
func ValidName(h string) bool { return Valid(h) && !EndsInNumber(h) }

func isDigit(c byte) bool { return c >= '0' && c <= '9' }

func isHex(c byte) bool { return isDigit(c) || c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F' }
