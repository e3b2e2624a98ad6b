// Package mintcache is the bounded cache of credentials the gateway mints
// on demand for what an agent dialled (TLS leaf certificates, SSH host
// certificates): one minting per key at a time, shared by concurrent
// callers; minted again once its refresh time has passed or when minting
// failed; and, over the bound, the entries due for refresh soonest evicted
// first. Keys come from untrusted input (SNI, dialled addresses), so the
// bound matters.
package mintcache

import (
	"sync"
	"time"
)

// Cache holds minted values by key. It is safe for concurrent use.
type Cache[V any] struct {
	// Max bounds the entries; set it before the Cache is shared.
	Max int
	now func() time.Time

	mu      sync.Mutex
	entries map[string]*entry[V]
}

// entry is a minted value, or one being minted while done is open.
type entry[V any] struct {
	done      chan struct{}
	v         V
	refreshAt time.Time
	err       error
}

// New returns a cache of at most max entries; now is read at every lookup
// (a test may swap the clock behind it).
func New[V any](max int, now func() time.Time) *Cache[V] {
	return &Cache[V]{Max: max, now: now, entries: map[string]*entry[V]{}}
}

// Get returns the value for key, calling mint when there is none, it failed
// last time, or its refresh time has passed. mint returns the value and
// when to mint it again.
func (c *Cache[V]) Get(key string, mint func() (V, time.Time, error)) (V, error) {
	c.mu.Lock()
	e := c.entries[key]
	if e != nil {
		select {
		case <-e.done:
			if e.err == nil && c.now().Before(e.refreshAt) {
				c.mu.Unlock()
				return e.v, nil
			}
			e = nil // failed or due for refresh: mint again
		default: // being minted
		}
	}
	if e != nil {
		c.mu.Unlock()
		<-e.done
		return e.v, e.err
	}
	e = &entry[V]{done: make(chan struct{})}
	c.entries[key] = e
	c.evictLocked()
	c.mu.Unlock()

	e.v, e.refreshAt, e.err = mint()
	if e.err != nil {
		c.mu.Lock()
		if c.entries[key] == e {
			delete(c.entries, key)
		}
		c.mu.Unlock()
	}
	close(e.done)
	return e.v, e.err
}

// Len is how many entries the cache holds.
func (c *Cache[V]) Len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.entries)
}

// evictLocked drops the minted entries due for refresh first until the
// cache is within its bound. c.mu is held.
func (c *Cache[V]) evictLocked() {
	for len(c.entries) > c.Max {
		var (
			oldestKey string
			oldest    *entry[V]
		)
		for k, e := range c.entries {
			select {
			case <-e.done:
			default:
				continue // being minted; its minter holds it
			}
			if oldest == nil || e.refreshAt.Before(oldest.refreshAt) {
				oldestKey, oldest = k, e
			}
		}
		if oldest == nil {
			return // all in flight
		}
		delete(c.entries, oldestKey)
	}
}
