package redisstore

import "testing"

// keySlot is Redis Cluster's CRC16: the example of the cluster
// specification, and a tag found for each of a few slots.
func TestKeySlot(t *testing.T) {
	t.Parallel()
	if got := keySlot("123456789"); got != 0x31C3 {
		t.Fatalf("keySlot(123456789) = %d, want %d", got, 0x31C3)
	}
	for _, slot := range []int{0, 5460, 5461, 10922, 16383} {
		if tag := slotTag(slot); keySlot(tag) != slot {
			t.Errorf("slotTag(%d) = %q, whose slot is %d", slot, tag, keySlot(tag))
		}
	}
}
