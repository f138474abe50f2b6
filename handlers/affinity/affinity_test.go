package affinity

import (
	"bytes"
	"syscall"
	"testing"

	"github.com/seccompagent/seccompagent/notify"
)

func TestKeepLowest(t *testing.T) {
	cases := []struct {
		name string
		in   []byte
		k    int
		want []byte
	}{
		{"fewer bits than k", []byte{0x03, 0, 0, 0}, 4, []byte{0x03, 0, 0, 0}},
		{"exactly k", []byte{0x0f}, 4, []byte{0x0f}},
		{"trim within a byte", []byte{0xff}, 3, []byte{0x07}},
		{"keep real ids, no renumbering", []byte{0x00, 0x81, 0x01}, 2, []byte{0x00, 0x81, 0x00}},
		{"non-contiguous cpuset 0-3,8,10-11", []byte{0x0f, 0x0d}, 5, []byte{0x0f, 0x01}},
		{"one CPU of a narrowed mask", []byte{0x02}, 1, []byte{0x02}},
		{"empty mask stays empty", []byte{0, 0}, 1, []byte{0, 0}},
	}
	for _, tc := range cases {
		got := append([]byte(nil), tc.in...)
		KeepLowest(got, tc.k)
		if !bytes.Equal(got, tc.want) {
			t.Errorf("%s: KeepLowest(%x, %d) = %x, want %x", tc.name, tc.in, tc.k, got, tc.want)
		}
		for i := range got {
			if got[i]&^tc.in[i] != 0 {
				t.Errorf("%s: a bit was set that the kernel did not set", tc.name)
			}
		}
	}
}

func TestParsePolicy(t *testing.T) {
	cases := []struct {
		in      string
		want    Policy
		wantErr bool
	}{
		{"", Policy{}, false},
		{"quota", Policy{}, false},
		{"off", Policy{Off: true}, false},
		{"4", Policy{Count: 4}, false},
		{" 2 ", Policy{Count: 2}, false},
		{"0", Policy{}, true},
		{"-1", Policy{}, true},
		{"many", Policy{}, true},
		{"1.5", Policy{}, true},
	}
	for _, tc := range cases {
		got, err := ParsePolicy(tc.in)
		if (err != nil) != tc.wantErr || got != tc.want {
			t.Errorf("ParsePolicy(%q) = %+v, %v; want %+v, err %v", tc.in, got, err, tc.want, tc.wantErr)
		}
	}
}

func TestLengthCheckWrapsLikeTheKernel(t *testing.T) {
	// kernel/sched: if ((len * BITS_PER_BYTE) < nr_cpu_ids) with len an
	// unsigned int: 0x20000000 * 8 wraps to 0.
	h := &Handler{Kernel: Kernel{NrCPUIDs: 2, MaskSize: 32}}
	req := &notify.Request{ABI: notify.AMD64, Args: [6]uint64{0, 0x20000000, 0}}
	if r := h.Handle(req); r.Errno != syscall.EINVAL {
		t.Fatalf("len 0x20000000: %v, want EINVAL (the kernel's product wraps to 0)", r)
	}
	req.Args[1] = 0x1_0000_0004 // only the low 32 bits are len
	if r := h.Handle(req); r.Errno != syscall.EINVAL {
		t.Fatalf("len 0x100000004: %v, want EINVAL (len is the low 32 bits, 4, not a multiple of 8)", r)
	}
}
