// Package ratelimit implements token-bucket and sliding-window limiters with a shared interface,
// an HTTP middleware, and a registry that keeps one limiter per key with idle eviction.
package ratelimit

import (
	"context"
	"errors"
	"fmt"
	"math"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"
)

// ErrLimited is returned by Wait when the context ends before a token is available.
var ErrLimited = errors.New("ratelimit: limit exceeded")

// Clock lets tests control time.
type Clock interface {
	Now() time.Time
}

type systemClock struct{}

func (systemClock) Now() time.Time { return time.Now() }

// Limiter decides whether an event may happen now.
type Limiter interface {
	// Allow reports whether one event may happen now, and consumes capacity if so.
	Allow() bool
	// Reserve returns how long the caller must wait before one event may happen.
	Reserve() time.Duration
	// Limit describes the limiter for response headers.
	Limit() (limit int, window time.Duration)
}

// TokenBucket refills at a constant rate up to a burst size.
type TokenBucket struct {
	mu       sync.Mutex
	clock    Clock
	rate     float64 // tokens per second
	burst    float64
	tokens   float64
	lastSeen time.Time
}

// NewTokenBucket creates a bucket that allows `perSecond` events per second on average and bursts
// of up to `burst` events. The bucket starts full.
func NewTokenBucket(perSecond float64, burst int, clock Clock) (*TokenBucket, error) {
	if perSecond <= 0 || math.IsInf(perSecond, 0) || math.IsNaN(perSecond) {
		return nil, fmt.Errorf("ratelimit: rate must be a positive number, got %v", perSecond)
	}
	if burst < 1 {
		return nil, fmt.Errorf("ratelimit: burst must be at least 1, got %d", burst)
	}
	if clock == nil {
		clock = systemClock{}
	}
	return &TokenBucket{
		clock:    clock,
		rate:     perSecond,
		burst:    float64(burst),
		tokens:   float64(burst),
		lastSeen: clock.Now(),
	}, nil
}

func (b *TokenBucket) refill(now time.Time) {
	elapsed := now.Sub(b.lastSeen).Seconds()
	if elapsed > 0 {
		b.tokens = math.Min(b.burst, b.tokens+elapsed*b.rate)
		b.lastSeen = now
	}
}

// Allow implements Limiter.
func (b *TokenBucket) Allow() bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.refill(b.clock.Now())
	if b.tokens >= 1 {
		b.tokens--
		return true
	}
	return false
}

// Reserve implements Limiter. It consumes a token that may be in the future.
func (b *TokenBucket) Reserve() time.Duration {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.refill(b.clock.Now())
	b.tokens--
	if b.tokens >= 0 {
		return 0
	}
	return time.Duration(-b.tokens / b.rate * float64(time.Second))
}

// Limit implements Limiter.
func (b *TokenBucket) Limit() (int, time.Duration) {
	return int(b.burst), time.Duration(b.burst / b.rate * float64(time.Second))
}

// Wait blocks until an event may happen or the context ends.
func Wait(ctx context.Context, l Limiter) error {
	delay := l.Reserve()
	if delay <= 0 {
		return nil
	}
	if deadline, ok := ctx.Deadline(); ok && time.Until(deadline) < delay {
		return ErrLimited
	}
	timer := time.NewTimer(delay)
	defer timer.Stop()
	select {
	case <-timer.C:
		return nil
	case <-ctx.Done():
		return ErrLimited
	}
}

// SlidingWindow counts events in the current and the previous fixed window and weights the
// previous one by how much of it still overlaps the sliding window. It uses constant memory.
type SlidingWindow struct {
	mu          sync.Mutex
	clock       Clock
	limit       int
	window      time.Duration
	windowStart time.Time
	current     int
	previous    int
}

// NewSlidingWindow allows `limit` events per `window`.
func NewSlidingWindow(limit int, window time.Duration, clock Clock) (*SlidingWindow, error) {
	if limit < 1 {
		return nil, fmt.Errorf("ratelimit: limit must be at least 1, got %d", limit)
	}
	if window <= 0 {
		return nil, fmt.Errorf("ratelimit: window must be positive, got %v", window)
	}
	if clock == nil {
		clock = systemClock{}
	}
	now := clock.Now()
	return &SlidingWindow{
		clock:       clock,
		limit:       limit,
		window:      window,
		windowStart: now.Truncate(window),
	}, nil
}

func (s *SlidingWindow) advance(now time.Time) {
	start := now.Truncate(s.window)
	switch gap := start.Sub(s.windowStart); {
	case gap <= 0:
		return
	case gap == s.window:
		s.previous, s.current = s.current, 0
	default:
		s.previous, s.current = 0, 0
	}
	s.windowStart = start
}

func (s *SlidingWindow) estimate(now time.Time) float64 {
	overlap := 1 - float64(now.Sub(s.windowStart))/float64(s.window)
	return float64(s.previous)*overlap + float64(s.current)
}

// Allow implements Limiter.
func (s *SlidingWindow) Allow() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.clock.Now()
	s.advance(now)
	if s.estimate(now)+1 > float64(s.limit) {
		return false
	}
	s.current++
	return true
}

// Reserve implements Limiter. A sliding window cannot lend from the future, so it reports the
// time until the estimate drops enough, without consuming anything.
func (s *SlidingWindow) Reserve() time.Duration {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.clock.Now()
	s.advance(now)
	if s.estimate(now)+1 <= float64(s.limit) {
		s.current++
		return 0
	}
	if s.previous == 0 {
		return s.windowStart.Add(s.window).Sub(now)
	}
	excess := s.estimate(now) + 1 - float64(s.limit)
	fraction := excess / float64(s.previous)
	return time.Duration(fraction * float64(s.window))
}

// Limit implements Limiter.
func (s *SlidingWindow) Limit() (int, time.Duration) { return s.limit, s.window }

// Registry keeps one limiter per key, created on first use and evicted when idle.
type Registry struct {
	mu      sync.Mutex
	factory func() Limiter
	entries map[string]*entry
	idle    time.Duration
	clock   Clock
}

type entry struct {
	limiter  Limiter
	lastUsed time.Time
}

// NewRegistry creates a registry. Limiters idle for longer than `idle` are removed by Sweep.
func NewRegistry(factory func() Limiter, idle time.Duration, clock Clock) *Registry {
	if clock == nil {
		clock = systemClock{}
	}
	return &Registry{factory: factory, entries: make(map[string]*entry), idle: idle, clock: clock}
}

// Get returns the limiter for key, creating it if needed.
func (r *Registry) Get(key string) Limiter {
	r.mu.Lock()
	defer r.mu.Unlock()
	e, ok := r.entries[key]
	if !ok {
		e = &entry{limiter: r.factory()}
		r.entries[key] = e
	}
	e.lastUsed = r.clock.Now()
	return e.limiter
}

// Sweep removes idle limiters and returns how many were removed.
func (r *Registry) Sweep() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	cutoff := r.clock.Now().Add(-r.idle)
	removed := 0
	for key, e := range r.entries {
		if e.lastUsed.Before(cutoff) {
			delete(r.entries, key)
			removed++
		}
	}
	return removed
}

// Len reports how many keys have a limiter.
func (r *Registry) Len() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.entries)
}

// KeyFunc extracts the rate-limit key from a request.
type KeyFunc func(*http.Request) string

// ClientIP keys requests by the client address, honouring X-Forwarded-For only from trusted
// proxies.
func ClientIP(trusted []*net.IPNet) KeyFunc {
	return func(r *http.Request) string {
		host, _, err := net.SplitHostPort(r.RemoteAddr)
		if err != nil {
			host = r.RemoteAddr
		}
		ip := net.ParseIP(host)
		if ip == nil || !isTrusted(ip, trusted) {
			return host
		}
		forwarded := r.Header.Get("X-Forwarded-For")
		if forwarded == "" {
			return host
		}
		parts := strings.Split(forwarded, ",")
		for i := len(parts) - 1; i >= 0; i-- {
			candidate := strings.TrimSpace(parts[i])
			parsed := net.ParseIP(candidate)
			if parsed == nil {
				continue
			}
			if !isTrusted(parsed, trusted) {
				return candidate
			}
		}
		return host
	}
}

func isTrusted(ip net.IP, trusted []*net.IPNet) bool {
	for _, network := range trusted {
		if network.Contains(ip) {
			return true
		}
	}
	return false
}

// Middleware rejects requests over the limit with 429 and sets the RateLimit headers.
func Middleware(registry *Registry, key KeyFunc, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		limiter := registry.Get(key(r))
		limit, window := limiter.Limit()
		w.Header().Set("RateLimit-Limit", strconv.Itoa(limit))
		w.Header().Set("RateLimit-Policy", fmt.Sprintf("%d;w=%d", limit, int(window.Seconds())))
		if !limiter.Allow() {
			retry := int(math.Ceil(limiter.Reserve().Seconds()))
			if retry < 1 {
				retry = 1
			}
			w.Header().Set("Retry-After", strconv.Itoa(retry))
			http.Error(w, "too many requests", http.StatusTooManyRequests)
			return
		}
		next.ServeHTTP(w, r)
	})
}
