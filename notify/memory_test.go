package notify

import "testing"

func TestWritableRun(t *testing.T) {
	maps := []byte(`00400000-00401000 r--p 00000000 08:01 1 /bin/x
00401000-00403000 rw-p 00000000 00:00 0
00403000-00404000 rw-p 00000000 00:00 0 [heap]
00404000-00405000 ---p 00000000 00:00 0
7ffd0000-7ffd2000 rw-p 00000000 00:00 0 [stack]
`)
	cases := []struct {
		name      string
		addr, len uint64
		want      uint64
	}{
		{"inside one writable mapping", 0x401010, 112, 112},
		{"across two adjacent writable mappings", 0x402ff0, 0x20, 0x20},
		{"read-only mapping", 0x400100, 64, 0},
		{"writable then PROT_NONE: partial", 0x403fd8, 112, 0x28},
		{"unmapped", 0x500000, 8, 0},
		{"NULL", 0, 8, 0},
		{"starts in a hole before a mapping", 0x3fffff, 4, 0},
		{"end of stack then unmapped", 0x7ffd1ff8, 32, 8},
		{"wraps the address space", ^uint64(0) - 3, 8, 0},
	}
	for _, tc := range cases {
		end := tc.addr + tc.len
		if end < tc.addr {
			if got := uint64(0); got != tc.want {
				t.Errorf("%s: got %d want %d", tc.name, got, tc.want)
			}
			continue
		}
		if got := writableRun(maps, tc.addr, end); got != tc.want {
			t.Errorf("%s: writableRun(%#x, %d) = %#x, want %#x", tc.name, tc.addr, tc.len, got, tc.want)
		}
	}
}
