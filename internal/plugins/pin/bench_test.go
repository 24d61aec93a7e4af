package pin_test

import (
	"strings"
	"testing"

	"github.com/portcullis/portcullis/internal/plugins/pin"
)

func BenchmarkScan(b *testing.B) {
	long := base()
	long.Description = strings.Repeat("Read the complete contents of a file from the file system. ", 1000) // 60 KB
	for name, d := range map[string]pin.Definition{"read_file": base(), "60KB": long} {
		b.Run(name, func(b *testing.B) {
			b.SetBytes(int64(len(d.Description) + len(d.InputSchema)))
			for b.Loop() {
				pin.Scan(d)
			}
		})
	}
}

func BenchmarkFingerprint(b *testing.B) {
	d := base()
	for b.Loop() {
		pin.Fingerprint(d)
	}
}
