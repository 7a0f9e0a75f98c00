package guard

import (
	"fmt"
	"slices"
	"sort"
	"strings"
	"time"
)

// Config is the guard's configuration. Start from DefaultConfig: the zero
// value is not the production default.
type Config struct {
	// LockTimeout is the lock_timeout guarded statements run with.
	LockTimeout time.Duration
	// SmallTableBytes: rules whose danger is the time a rewrite, scan or
	// index build holds a strong lock pass (as timeout) for relations whose
	// pg_total_relation_size is below this. 0 never relaxes.
	SmallTableBytes int64
	// Rules configures rules by id; rules not listed keep their defaults.
	Rules map[string]RuleConfig
	// Databases and Roles override Rules, LockTimeout and SmallTableBytes
	// for one database or role (role wins over database).
	Databases map[string]Override
	Roles     map[string]Override
	// InlineOverrideRoles may use /* ddlguard:allow rule-id reason="..." */.
	InlineOverrideRoles []string
	// CacheEntries bounds the per-text parse cache.
	CacheEntries int
	// Lint enables the rules that only make sense for migration files
	// (missing-lock-timeout) and honours -- ddlguard:ignore comments.
	Lint bool
}

// RuleConfig configures one rule.
type RuleConfig struct {
	Mode Mode
	// NoRewrite makes a rule that has a rewrite reject instead.
	NoRewrite bool
	// LockTimeout overrides the global lock timeout for statements this
	// rule decides (0 = global).
	LockTimeout time.Duration
}

// Override is per-database or per-role configuration.
type Override struct {
	Rules           map[string]RuleConfig
	LockTimeout     time.Duration
	SmallTableBytes *int64
}

// Defaults.
const (
	DefaultLockTimeout     = 500 * time.Millisecond
	DefaultSmallTableBytes = 10 << 20
	DefaultCacheEntries    = 4096
)

// DefaultConfig is the zero-configuration production setup: every rule at
// its default mode (enforce, except the several-tables rule, which warns).
func DefaultConfig() Config {
	return Config{
		LockTimeout:     DefaultLockTimeout,
		SmallTableBytes: DefaultSmallTableBytes,
		CacheEntries:    DefaultCacheEntries,
	}
}

// Validate names the first field that cannot work.
func (c Config) Validate() error {
	if c.LockTimeout <= 0 {
		return fmt.Errorf("lock_timeout: must be greater than zero")
	}
	if c.SmallTableBytes < 0 {
		return fmt.Errorf("small_table_bytes: must not be negative")
	}
	if err := validateRules("rules", c.Rules); err != nil {
		return err
	}
	for _, set := range []struct {
		name string
		m    map[string]Override
	}{{"databases", c.Databases}, {"roles", c.Roles}} {
		for k, o := range set.m {
			if err := validateRules(set.name+"."+k+".rules", o.Rules); err != nil {
				return err
			}
			if o.LockTimeout < 0 {
				return fmt.Errorf("%s.%s.lock_timeout: must not be negative", set.name, k)
			}
			if o.SmallTableBytes != nil && *o.SmallTableBytes < 0 {
				return fmt.Errorf("%s.%s.small_table_bytes: must not be negative", set.name, k)
			}
		}
	}
	return nil
}

func validateRules(path string, rules map[string]RuleConfig) error {
	for id, rc := range rules {
		if ruleByID(id) == nil {
			return fmt.Errorf("%s.%s: unknown rule (known: %s)", path, id, strings.Join(RuleIDs(), ", "))
		}
		if rc.Mode < Enforce || rc.Mode > Off {
			return fmt.Errorf("%s.%s.mode: must be enforce, warn or off", path, id)
		}
		if rc.LockTimeout < 0 {
			return fmt.Errorf("%s.%s.lock_timeout: must not be negative", path, id)
		}
	}
	return nil
}

// ParseMode reads "enforce", "warn" or "off".
func ParseMode(s string) (Mode, error) {
	for m := Enforce; m <= Off; m++ {
		if strings.EqualFold(s, m.String()) {
			return m, nil
		}
	}
	return Enforce, fmt.Errorf("%q is not one of enforce, warn, off", s)
}

// RuleIDs lists every rule id, sorted.
func RuleIDs() []string {
	ids := make([]string, 0, len(registry))
	for _, r := range registry {
		ids = append(ids, r.ID())
	}
	sort.Strings(ids)
	return ids
}

// ruleConfig resolves a rule's configuration for a session.
func (c *Config) ruleConfig(r Rule, sess *Session) RuleConfig {
	rc := RuleConfig{Mode: c.defaultMode(r)}
	if v, ok := c.Rules[r.ID()]; ok {
		rc = v
	}
	if o, ok := c.Databases[sess.Database]; ok {
		if v, ok := o.Rules[r.ID()]; ok {
			rc = v
		}
	}
	if o, ok := c.Roles[sess.Role]; ok {
		if v, ok := o.Rules[r.ID()]; ok {
			rc = v
		}
	}
	return rc
}

// lockTimeout resolves the lock timeout for a session (and rule, if any).
func (c *Config) lockTimeout(sess *Session, rc *RuleConfig) time.Duration {
	t := c.LockTimeout
	if o, ok := c.Databases[sess.Database]; ok && o.LockTimeout > 0 {
		t = o.LockTimeout
	}
	if o, ok := c.Roles[sess.Role]; ok && o.LockTimeout > 0 {
		t = o.LockTimeout
	}
	if rc != nil && rc.LockTimeout > 0 {
		t = rc.LockTimeout
	}
	return t
}

// smallTableBytes resolves the small-table threshold for a session.
func (c *Config) smallTableBytes(sess *Session) int64 {
	t := c.SmallTableBytes
	if o, ok := c.Databases[sess.Database]; ok && o.SmallTableBytes != nil {
		t = *o.SmallTableBytes
	}
	if o, ok := c.Roles[sess.Role]; ok && o.SmallTableBytes != nil {
		t = *o.SmallTableBytes
	}
	return t
}

// mayOverrideInline: role may use inline ddlguard:allow comments.
func (c *Config) mayOverrideInline(role string) bool {
	return slices.Contains(c.InlineOverrideRoles, role)
}
