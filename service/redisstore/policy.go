package redisstore

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/otpd/otpd/service"
)

// Limits live in Redis as keys with a TTL: a window, a cooldown, a code
// with its attempt count. A Redis whose maxmemory-policy evicts keys
// (allkeys-*, and volatile-* too, since every otpd key has a TTL) drops
// them under memory pressure, and each dropped key is a limit silently
// lifted. So otpd reads the policy of every node that takes its writes
// and refuses any but noeviction, unless redis.allow_eviction says the
// operator accepts that.

// EvictionError is the refusal of a Redis whose maxmemory-policy may
// evict otpd's keys.
type EvictionError struct {
	Node   string // the node's address
	Policy string // its maxmemory-policy
}

func (e *EvictionError) Error() string {
	return fmt.Sprintf("redis maxmemory-policy is %s on %s: Redis may evict otpd's keys under memory pressure, "+
		"and every evicted window, cooldown or attempt count is a limit lifted; "+
		"set maxmemory-policy noeviction, or redis.allow_eviction: true to run anyway", e.Policy, e.Node)
}

// CheckEviction reads maxmemory-policy on every node that takes otpd's
// writes: the node of a single-node client, the current master behind
// Sentinel, every master of a Cluster. It reads CONFIG GET and, where
// CONFIG is refused (managed Redis, an ACL, a renamed command), the
// maxmemory_policy field of INFO memory.
//
// A policy other than noeviction is an *EvictionError, or with allow a
// warning. A policy that neither command reveals is a warning. A Redis
// that does not answer is an error marked service.ErrStoreUnavailable:
// nothing is known yet.
func CheckEviction(ctx context.Context, rdb redis.UniversalClient, allow bool) (warning string, err error) {
	var (
		mu       sync.Mutex
		evicting []*EvictionError
		unread   []string
	)
	check := func(ctx context.Context, node string, c redis.Cmdable) error {
		policy, why, err := readPolicy(ctx, c)
		if err != nil {
			return &storeError{op: "check maxmemory-policy on " + node, err: err, marks: []error{service.ErrStoreUnavailable}}
		}
		mu.Lock()
		defer mu.Unlock()
		switch {
		case policy == "":
			unread = append(unread, node+" ("+why+")")
		case policy != "noeviction":
			evicting = append(evicting, &EvictionError{Node: node, Policy: policy})
		}
		return nil
	}
	switch c := rdb.(type) {
	case *redis.ClusterClient:
		err = c.ForEachMaster(ctx, func(ctx context.Context, n *redis.Client) error {
			return check(ctx, n.Options().Addr, n)
		})
		if err != nil && !errors.Is(err, service.ErrStoreUnavailable) {
			// The cluster's state could not be loaded: no node answered.
			err = &storeError{op: "check maxmemory-policy", err: err, marks: []error{service.ErrStoreUnavailable}}
		}
	case *redis.Client:
		node := c.Options().Addr
		if node == "FailoverClient" { // go-redis's name for a Sentinel client
			node = "the Sentinel master"
		}
		err = check(ctx, node, c)
	default:
		err = check(ctx, "redis", rdb)
	}
	if err != nil {
		return "", err
	}
	sort.Slice(evicting, func(i, j int) bool { return evicting[i].Node < evicting[j].Node })
	sort.Strings(unread)
	var warnings []string
	if len(evicting) > 0 {
		if !allow {
			return "", evicting[0]
		}
		var nodes []string
		for _, e := range evicting {
			nodes = append(nodes, e.Policy+" on "+e.Node)
		}
		warnings = append(warnings, "redis maxmemory-policy is "+strings.Join(nodes, ", ")+
			" and redis.allow_eviction is true: under memory pressure Redis evicts otpd's keys, and every evicted window, cooldown or attempt count is a limit lifted")
	}
	if len(unread) > 0 {
		warnings = append(warnings, "cannot read redis maxmemory-policy on "+strings.Join(unread, ", ")+
			": make sure it is noeviction (on managed Redis, in the provider's parameter settings); an evicting policy lifts otpd's limits under memory pressure")
	}
	return strings.Join(warnings, "; "), nil
}

// readPolicy returns the node's maxmemory-policy, or "" and why it could
// not be read when the node refused both CONFIG GET and INFO. err is set
// only when the node did not answer.
func readPolicy(ctx context.Context, c redis.Cmdable) (policy, why string, err error) {
	cfg, err := c.ConfigGet(ctx, "maxmemory-policy").Result()
	switch {
	case err == nil && cfg["maxmemory-policy"] != "":
		return cfg["maxmemory-policy"], "", nil
	case err == nil:
		why = "CONFIG GET: no such parameter"
	case isReply(err):
		why = "CONFIG GET: " + err.Error()
	default:
		return "", "", err
	}
	info, err := c.Info(ctx, "memory").Result()
	switch {
	case err == nil:
		for _, line := range strings.Split(info, "\n") {
			if v, ok := strings.CutPrefix(strings.TrimSpace(line), "maxmemory_policy:"); ok && v != "" {
				return v, "", nil
			}
		}
		return "", why + "; INFO memory: no maxmemory_policy", nil
	case isReply(err):
		return "", why + "; INFO memory: " + err.Error(), nil
	default:
		return "", "", err
	}
}

// isReply reports whether err is the server's answer (an error reply),
// as opposed to no answer at all.
func isReply(err error) bool {
	var re redis.Error
	return errors.As(err, &re)
}

// policyRecheck is how often a running otpd reads the policy again; it
// also does after every failed health probe (a restart, a failover).
const policyRecheck = time.Minute

// evictionCheck is the policy check a Store repeats with its health
// probe.
type evictionCheck struct {
	allow bool
	warn  func(string)

	mu     sync.Mutex
	at     time.Time       // when the policy last passed; zero: at the next probe
	warned map[string]bool // warnings given, each once
}

// WithEvictionCheck makes the store check Redis's maxmemory-policy
// (CheckEviction with allow) in CheckEviction, and again with its health
// probe (Ping): at the first probe that succeeds after one that failed,
// and every minute. warn receives each distinct warning once. Without
// this option Ping checks nothing but writability.
func WithEvictionCheck(allow bool, warn func(msg string)) Option {
	return func(s *Store) { s.evict = &evictionCheck{allow: allow, warn: warn, warned: map[string]bool{}} }
}

// CheckEviction checks Redis's maxmemory-policy now, as the package's
// CheckEviction with the allow of WithEvictionCheck (false without it),
// and gives its warning, if new, to the option's warn. otpd calls it at
// start: an *EvictionError refuses to start.
func (s *Store) CheckEviction(ctx context.Context) error {
	e := s.evict
	if e == nil {
		e = &evictionCheck{warned: map[string]bool{}}
	}
	warning, err := CheckEviction(ctx, s.rdb, e.allow)
	if err != nil {
		return err
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	e.at = time.Now()
	if warning != "" && !e.warned[warning] {
		e.warned[warning] = true
		if e.warn != nil {
			e.warn(warning)
		}
	}
	return nil
}

// recheck checks the policy again when due. Only a refusal is an error:
// a policy that could not be read now is read at the next probe.
func (s *Store) recheck(ctx context.Context) error {
	if s.evict == nil {
		return nil
	}
	s.evict.mu.Lock()
	due := time.Since(s.evict.at) >= policyRecheck
	s.evict.mu.Unlock()
	if !due {
		return nil
	}
	err := s.CheckEviction(ctx)
	var evicting *EvictionError
	if errors.As(err, &evicting) {
		return err
	}
	return nil
}

// forget makes the next probe check the policy: the node that answers
// after a failure may be another one (a failover) or restarted with
// another configuration.
func (s *Store) forget() {
	if s.evict == nil {
		return
	}
	s.evict.mu.Lock()
	s.evict.at = time.Time{}
	s.evict.mu.Unlock()
}
