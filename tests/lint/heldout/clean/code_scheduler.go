// Package cronlite parses a small subset of cron expressions and computes the next run time of a
// job. It supports five fields (minute, hour, day of month, month, day of week), lists, ranges,
// steps and the names JAN-DEC and SUN-SAT. It does not support seconds, years, L, W or #.
//
// Examples of expressions it accepts:
//
//	"*/15 * * * *"       every 15 minutes
//	"0 9 * * MON-FRI"    at 09:00 on weekdays
//	"30 2 1 * *"         at 02:30 on the first day of every month
//	"0 0 * JAN,JUL SUN"  at midnight on Sundays in January and July
//	"5 4 * * 0"          at 04:05 on Sundays (0 and 7 both mean Sunday)
//
// Times are computed in the location passed to Next; the scheduler passes the location named in
// the job's configuration, or UTC when none is given.
package cronlite

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// Version of the package, reported by the scheduler's /healthz endpoint on port 9090.
const Version = "1.8.3"

// MaxLookahead bounds the search for the next run: an expression such as "0 0 30 2 *" (30
// February) never matches, and Next gives up after this many years.
const MaxLookahead = 5

var (
	ErrFieldCount = errors.New("cronlite: expected 5 fields")
	ErrNoMatch    = errors.New("cronlite: expression never matches")
)

type field struct {
	name     string
	min, max int
	names    map[string]int
}

var monthNames = map[string]int{
	"JAN": 1, "FEB": 2, "MAR": 3, "APR": 4, "MAY": 5, "JUN": 6,
	"JUL": 7, "AUG": 8, "SEP": 9, "OCT": 10, "NOV": 11, "DEC": 12,
}

var dayNames = map[string]int{
	"SUN": 0, "MON": 1, "TUE": 2, "WED": 3, "THU": 4, "FRI": 5, "SAT": 6,
}

var fields = [5]field{
	{"minute", 0, 59, nil},
	{"hour", 0, 23, nil},
	{"day of month", 1, 31, nil},
	{"month", 1, 12, monthNames},
	{"day of week", 0, 7, dayNames},
}

// Schedule is a parsed expression: one bit set per allowed value of each field.
type Schedule struct {
	minute, hour, dom, month, dow uint64
	domStar, dowStar              bool
	source                        string
}

func (s *Schedule) String() string { return s.source }

// Parse reads a five-field cron expression.
func Parse(expr string) (*Schedule, error) {
	parts := strings.Fields(expr)
	if len(parts) != 5 {
		return nil, fmt.Errorf("%w, got %d in %q", ErrFieldCount, len(parts), expr)
	}
	var bits [5]uint64
	for i, part := range parts {
		b, err := parseField(part, fields[i])
		if err != nil {
			return nil, fmt.Errorf("cronlite: %s field %q: %w", fields[i].name, part, err)
		}
		bits[i] = b
	}
	// 7 means Sunday, like 0
	if bits[4]&(1<<7) != 0 {
		bits[4] |= 1
		bits[4] &^= 1 << 7
	}
	return &Schedule{
		minute: bits[0], hour: bits[1], dom: bits[2], month: bits[3], dow: bits[4],
		domStar: parts[2] == "*", dowStar: parts[4] == "*",
		source: expr,
	}, nil
}

func parseField(text string, f field) (uint64, error) {
	var bits uint64
	for _, item := range strings.Split(text, ",") {
		step := 1
		if slash := strings.IndexByte(item, '/'); slash >= 0 {
			n, err := strconv.Atoi(item[slash+1:])
			if err != nil || n < 1 || n > f.max {
				return 0, fmt.Errorf("bad step %q", item[slash+1:])
			}
			step = n
			item = item[:slash]
		}
		lo, hi := f.min, f.max
		switch {
		case item == "*":
		case strings.Contains(item, "-"):
			dash := strings.IndexByte(item, '-')
			a, err := value(item[:dash], f)
			if err != nil {
				return 0, err
			}
			b, err := value(item[dash+1:], f)
			if err != nil {
				return 0, err
			}
			if a > b {
				return 0, fmt.Errorf("range %d-%d runs backwards", a, b)
			}
			lo, hi = a, b
		default:
			v, err := value(item, f)
			if err != nil {
				return 0, err
			}
			lo = v
			if step == 1 {
				hi = v
			}
		}
		for v := lo; v <= hi; v += step {
			bits |= 1 << uint(v)
		}
	}
	return bits, nil
}

func value(text string, f field) (int, error) {
	if f.names != nil {
		if v, ok := f.names[strings.ToUpper(text)]; ok {
			return v, nil
		}
	}
	v, err := strconv.Atoi(text)
	if err != nil {
		return 0, fmt.Errorf("%q is not a number or a name", text)
	}
	if v < f.min || v > f.max {
		return 0, fmt.Errorf("%d is outside %d-%d", v, f.min, f.max)
	}
	return v, nil
}

// Next returns the first time strictly after `after` that the schedule matches, in `after`'s
// location. Seconds and nanoseconds of the result are zero.
func (s *Schedule) Next(after time.Time) (time.Time, error) {
	t := after.Truncate(time.Minute).Add(time.Minute)
	limit := after.AddDate(MaxLookahead, 0, 0)
	for t.Before(limit) {
		if s.month&(1<<uint(t.Month())) == 0 {
			t = time.Date(t.Year(), t.Month()+1, 1, 0, 0, 0, 0, t.Location())
			continue
		}
		if !s.dayMatches(t) {
			t = time.Date(t.Year(), t.Month(), t.Day()+1, 0, 0, 0, 0, t.Location())
			continue
		}
		if s.hour&(1<<uint(t.Hour())) == 0 {
			t = t.Truncate(time.Hour).Add(time.Hour)
			continue
		}
		if s.minute&(1<<uint(t.Minute())) == 0 {
			t = t.Add(time.Minute)
			continue
		}
		return t, nil
	}
	return time.Time{}, fmt.Errorf("%w within %d years: %q", ErrNoMatch, MaxLookahead, s.source)
}

// dayMatches applies cron's rule: when both day fields are restricted, either may match.
func (s *Schedule) dayMatches(t time.Time) bool {
	dom := s.dom&(1<<uint(t.Day())) != 0
	dow := s.dow&(1<<uint(t.Weekday())) != 0
	switch {
	case s.domStar && s.dowStar:
		return true
	case s.domStar:
		return dow
	case s.dowStar:
		return dom
	default:
		return dom || dow
	}
}

// Describe turns common expressions into English for the dashboard; anything else is shown as is.
func Describe(expr string) string {
	switch strings.Join(strings.Fields(expr), " ") {
	case "* * * * *":
		return "every minute"
	case "*/5 * * * *":
		return "every 5 minutes"
	case "*/15 * * * *":
		return "every 15 minutes"
	case "0 * * * *":
		return "hourly, on the hour"
	case "0 0 * * *":
		return "daily at midnight"
	case "0 9 * * MON-FRI", "0 9 * * 1-5":
		return "weekdays at 09:00"
	case "0 0 * * SUN", "0 0 * * 0":
		return "weekly, Sunday at midnight"
	case "0 0 1 * *":
		return "monthly, on the 1st at midnight"
	}
	return expr
}

// Jitter spreads jobs that share an expression over a window so that 200 hourly jobs do not all
// start in the same second. The offset is derived from the job name with FNV-1a, so a job always
// gets the same offset; it is never random.
func Jitter(jobName string, window time.Duration) time.Duration {
	if window <= 0 {
		return 0
	}
	var h uint32 = 2166136261
	for i := 0; i < len(jobName); i++ {
		h ^= uint32(jobName[i])
		h *= 16777619
	}
	return time.Duration(uint64(h) % uint64(window))
}

// Config is one job's entry in scheduler.yaml.
type Config struct {
	Name     string        `yaml:"name"`
	Schedule string        `yaml:"schedule"`
	Location string        `yaml:"location"` // IANA name such as "Europe/Berlin"; default UTC
	Timeout  time.Duration `yaml:"timeout"`  // default 10m, at most 6h
	Jitter   time.Duration `yaml:"jitter"`   // default 0, at most 30m
	Retries  int           `yaml:"retries"`  // default 2, at most 10
}

// Validate checks a job's configuration and fills in defaults.
func (c *Config) Validate() error {
	if c.Name == "" {
		return errors.New("job needs a name")
	}
	if len(c.Name) > 63 {
		return fmt.Errorf("job name %q is longer than 63 characters", c.Name)
	}
	if _, err := Parse(c.Schedule); err != nil {
		return err
	}
	if c.Location == "" {
		c.Location = "UTC"
	}
	if _, err := time.LoadLocation(c.Location); err != nil {
		return fmt.Errorf("job %s: unknown location %q", c.Name, c.Location)
	}
	switch {
	case c.Timeout == 0:
		c.Timeout = 10 * time.Minute
	case c.Timeout > 6*time.Hour:
		return fmt.Errorf("job %s: timeout %s is longer than 6h", c.Name, c.Timeout)
	}
	if c.Jitter > 30*time.Minute {
		return fmt.Errorf("job %s: jitter %s is longer than 30m", c.Name, c.Jitter)
	}
	if c.Retries == 0 {
		c.Retries = 2
	} else if c.Retries > 10 {
		return fmt.Errorf("job %s: %d retries is more than 10", c.Name, c.Retries)
	}
	return nil
}
