package service

import (
	"hash/maphash"
	"sync"
)

// phoneCache remembers what parsePhone made of recent inputs. Parsing a
// number with the numbering-plan library (regular expressions for
// extensions, then the region's number patterns for validity) costs about
// 20 µs of CPU, the largest share of a VerifyCode; and a number is parsed
// at least twice, on the send and on the verify that follows it, often more
// (resends, wrong codes). parsePhone is a pure function of its input, so a
// remembered answer is always the right one.
//
// The cache is bounded: each shard keeps two generations of at most
// perShard entries; when the current one fills up it becomes the old one
// and the old one is dropped. An entry used while in the old generation
// moves to the current one, so numbers in use stay while a flood of new
// numbers (SMS pumping) only ever costs its own parsing. Only inputs of at
// most maxCachedPhoneLen bytes are kept, which bounds the memory too.
type phoneCache struct {
	parsePhone phoneParser // parsePhone; tests count the calls
	seed       maphash.Seed
	perShard   int
	shards     [phoneCacheShards]phoneShard
}

const (
	phoneCacheShards = 16
	// maxCachedPhoneLen is longer than any E.164 number with separators
	// ("+1 (415) 555-0123" is 17 bytes).
	maxCachedPhoneLen = 32
	// defaultPhoneCacheSize is how many numbers the cache holds at least
	// (up to twice that, about 13 MB when full): the numbers a replica sends
	// to in 30 s at a thousand sends a second, in hours at usual rates.
	defaultPhoneCacheSize = 1 << 15
)

type phoneShard struct {
	mu       sync.Mutex
	cur, old map[string]phoneResult
}

// phoneResult is parsePhone's answer: the recipient, or why it was refused.
type phoneResult struct {
	r       recipient
	refusal string
}

// newPhoneCache returns a cache that holds at least size numbers; size 0
// turns it off.
func newPhoneCache(size int) *phoneCache {
	c := &phoneCache{parsePhone: parsePhone, seed: maphash.MakeSeed(), perShard: size / phoneCacheShards}
	if size > 0 && c.perShard == 0 {
		c.perShard = 1
	}
	return c
}

// parse is parsePhone, remembered.
func (c *phoneCache) parse(raw string, v *violations) (recipient, bool) {
	if c.perShard == 0 || len(raw) > maxCachedPhoneLen {
		return c.parsePhone(raw, v)
	}
	sh := &c.shards[maphash.String(c.seed, raw)%phoneCacheShards]
	res, ok := sh.get(raw, c.perShard)
	if !ok {
		var own violations
		res.r, ok = c.parsePhone(raw, &own)
		if !ok {
			res.refusal = "is not a valid phone number"
			if len(own.list) > 0 {
				res.refusal = own.list[0].Description
			}
		}
		sh.put(raw, res, c.perShard)
	}
	if res.refusal != "" {
		v.add("recipient", res.refusal)
		return recipient{}, false
	}
	return res.r, true
}

func (sh *phoneShard) get(raw string, limit int) (phoneResult, bool) {
	sh.mu.Lock()
	defer sh.mu.Unlock()
	if res, ok := sh.cur[raw]; ok {
		return res, true
	}
	res, ok := sh.old[raw]
	if ok {
		sh.add(raw, res, limit)
	}
	return res, ok
}

func (sh *phoneShard) put(raw string, res phoneResult, limit int) {
	sh.mu.Lock()
	defer sh.mu.Unlock()
	sh.add(raw, res, limit)
}

// add stores an entry in the current generation, starting a new one when
// it is full. The caller holds mu.
func (sh *phoneShard) add(raw string, res phoneResult, limit int) {
	if len(sh.cur) >= limit {
		sh.old, sh.cur = sh.cur, nil
	}
	if sh.cur == nil {
		sh.cur = make(map[string]phoneResult, limit)
	}
	sh.cur[raw] = res
}

// len is how many entries the cache holds, for tests.
func (c *phoneCache) len() int {
	n := 0
	for i := range c.shards {
		sh := &c.shards[i]
		sh.mu.Lock()
		n += len(sh.cur) + len(sh.old)
		sh.mu.Unlock()
	}
	return n
}
