package decision

import (
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"
)

// GuardrailConfig is the `guardrails:` section of a policy bundle: the parameters a policy may
// tune within documented bounds (docs/guardrails.md). Every field is optional; an absent field
// keeps its default. There is no field that switches a guardrail off, and values outside their
// bounds are rejected by the constructor with a ConfigError naming the YAML field.
type GuardrailConfig struct {
	// QuietHours is the local-time window in which no message (other than SECURITY) is sent.
	// Default 21:00 to 08:00 for every purpose.
	QuietHours QuietHoursConfig `yaml:"quiet_hours"`
	// Caps are frequency caps. A cap named like a default cap (sms_daily, sms_weekly,
	// all_daily, all_weekly, all_monthly, marketing_monthly, ivr_collections_weekly) changes
	// that default's limit only; any other name adds a cap. Default caps cannot be removed.
	Caps []CapConfig `yaml:"caps"`
	// FailingChannelCooldown is how long a channel stays skipped after a DELIVERY_FAILED
	// outcome. Default "24h"; bounds 1h to 30d.
	FailingChannelCooldown string `yaml:"failing_channel_cooldown"`
	// HardshipQueue is the queue vulnerable customers are escalated to. Default "hardship".
	HardshipQueue string `yaml:"hardship_queue"`
	// DefaultChannels is the channel order used when neither the rule nor the customer names
	// one. Default [email, sms, push].
	DefaultChannels []string `yaml:"default_channels"`
}

// QuietHoursConfig sets the quiet period, overall and per purpose.
type QuietHoursConfig struct {
	// Start of the quiet period, "HH:MM" local time. Default "21:00"; bounds 18:00 to 21:00.
	Start string `yaml:"start"`
	// End of the quiet period, "HH:MM" local time. Default "08:00"; bounds 08:00 to 11:00.
	End string `yaml:"end"`
	// Purposes overrides the window for service, collections or marketing messages, with
	// the same bounds. SECURITY messages are exempt and cannot be listed.
	Purposes map[string]QuietWindow `yaml:"purposes"`
}

// QuietWindow is a daily local-time window from Start to End ("HH:MM"); it wraps midnight when
// Start is later than End.
type QuietWindow struct {
	Start string `yaml:"start"`
	End   string `yaml:"end"`
}

// CapConfig is one frequency cap: at most Limit messages of Purposes on Channel in any rolling
// Window.
type CapConfig struct {
	// Name identifies the cap in counters, explanations and store conflicts.
	Name string `yaml:"name"`
	// Channel is a channel name, or "any" (the default) for a cap across channels.
	Channel string `yaml:"channel"`
	// Purposes counted by the cap; default service, collections and marketing.
	Purposes []string `yaml:"purposes"`
	// Window is "24h", "7d" or "30d".
	Window string `yaml:"window"`
	// Limit is the number of messages allowed in the window; 0 allows none. Required. At most
	// 5 per 24h, 15 per 7d and 40 per 30d, and at most the ceiling of a default cap.
	Limit *int `yaml:"limit"`
}

// ConfigError is a policy parameter that is missing, malformed or outside its bounds.
type ConfigError struct {
	// Field is the YAML path of the parameter, for example "guardrails.quiet_hours.start".
	Field string
	// Problem says what is wrong with it.
	Problem string
}

func (e *ConfigError) Error() string { return e.Field + ": " + e.Problem }

func cfgErr(field, format string, args ...any) error {
	return &ConfigError{Field: field, Problem: fmt.Sprintf(format, args...)}
}

// Bounds and defaults of the guardrail parameters. docs/guardrails.md lists the same values.
const (
	quietStartDefault = 21 * 60
	quietEndDefault   = 8 * 60
	quietStartMin     = 18 * 60 // a quiet period may start earlier than 21:00, from 18:00
	quietStartMax     = 21 * 60 // never later than 21:00 (TCPA, Regulation F)
	quietEndMin       = 8 * 60  // never earlier than 08:00 (TCPA, Regulation F)
	quietEndMax       = 11 * 60

	day              = 24 * time.Hour
	cooldownDefault  = 24 * time.Hour
	cooldownMin      = time.Hour
	cooldownMax      = 30 * day
	hardshipQueueDef = "hardship"
)

// capWindowCeilings are the highest limits any cap may set, per window.
var capWindowCeilings = [...]struct {
	window time.Duration
	max    int
}{{day, 5}, {7 * day, 15}, {30 * day, 40}}

func capCeiling(w time.Duration) (int, bool) {
	for _, c := range capWindowCeilings {
		if c.window == w {
			return c.max, true
		}
	}
	return 0, false
}

// defaultCap is a cap every policy has. A policy may change its limit up to ceiling.
type defaultCap struct {
	check   CapCheck // Since unset; Limit is the default
	window  time.Duration
	ceiling int
}

func defaultCaps() []defaultCap {
	nonSecurity := PurposesOf(PurposeService, PurposeCollections, PurposeMarketing)
	return []defaultCap{
		{CapCheck{Name: "sms_daily", Channel: ChannelSMS, Purposes: nonSecurity, Limit: 1}, day, 2},
		{CapCheck{Name: "sms_weekly", Channel: ChannelSMS, Purposes: nonSecurity, Limit: 3}, 7 * day, 5},
		{CapCheck{Name: "all_daily", Purposes: nonSecurity, Limit: 2}, day, 4},
		{CapCheck{Name: "all_weekly", Purposes: nonSecurity, Limit: 5}, 7 * day, 10},
		{CapCheck{Name: "all_monthly", Purposes: nonSecurity, Limit: 15}, 30 * day, 30},
		{CapCheck{Name: "marketing_monthly", Purposes: PurposesOf(PurposeMarketing), Limit: 4}, 30 * day, 8},
		// Regulation F: at most 7 call attempts in 7 days about one debt.
		{CapCheck{Name: "ivr_collections_weekly", Channel: ChannelIVR, Purposes: PurposesOf(PurposeCollections), Limit: 3}, 7 * day, 7},
	}
}

// channelNames and purposeNames are the YAML spellings, indexed by value.
var (
	channelNames = [channelCount]string{"", "email", "sms", "push", "chat", "ivr", "whatsapp"}
	purposeNames = [purposeCount]string{"", "service", "collections", "marketing", "security"}
)

func (c Channel) name() string {
	if c < channelCount {
		return channelNames[c]
	}
	return ""
}

func (p Purpose) name() string {
	if p < purposeCount {
		return purposeNames[p]
	}
	return ""
}

func parseChannel(s string) (Channel, bool) {
	for i := ChannelEmail; i < channelCount; i++ {
		if channelNames[i] == strings.ToLower(s) {
			return i, true
		}
	}
	return ChannelUnspecified, false
}

func parsePurpose(s string) (Purpose, bool) {
	for i := PurposeService; i < purposeCount; i++ {
		if purposeNames[i] == strings.ToLower(s) {
			return i, true
		}
	}
	return PurposeUnspecified, false
}

// parseClock parses "HH:MM" into minutes after midnight.
func parseClock(s string) (int, bool) {
	h, m, ok := strings.Cut(s, ":")
	if !ok || len(h) != 2 || len(m) != 2 {
		return 0, false
	}
	hh, err1 := strconv.Atoi(h)
	mm, err2 := strconv.Atoi(m)
	if err1 != nil || err2 != nil || hh < 0 || hh > 23 || mm < 0 || mm > 59 {
		return 0, false
	}
	return hh*60 + mm, true
}

func formatClock(min int) string { return fmt.Sprintf("%02d:%02d", min/60, min%60) }

// parseDuration parses a Go duration ("90m", "4h") or a whole number of days ("7d").
func parseDuration(s string) (time.Duration, bool) {
	if n, ok := strings.CutSuffix(s, "d"); ok {
		d, err := strconv.Atoi(n)
		if err != nil || d < 0 || d > 3650 {
			return 0, false
		}
		return time.Duration(d) * day, true
	}
	d, err := time.ParseDuration(s)
	return d, err == nil
}

func durationField(field, s string, def, lo, hi time.Duration) (time.Duration, error) {
	if s == "" {
		return def, nil
	}
	d, ok := parseDuration(s)
	if !ok {
		return 0, cfgErr(field, "%q is not a duration (use for example \"4h\" or \"7d\")", s)
	}
	if d < lo || d > hi {
		return 0, cfgErr(field, "%s is outside the bounds %s to %s", s, lo, hi)
	}
	return d, nil
}

// quietWindow builds the quiet window of one purpose, checking bounds.
func quietWindow(field string, w QuietWindow, def quietPeriod) (quietPeriod, error) {
	q := def
	if w.Start != "" {
		m, ok := parseClock(w.Start)
		if !ok {
			return q, cfgErr(field+".start", "%q is not a time of day HH:MM", w.Start)
		}
		if m < quietStartMin || m > quietStartMax {
			return q, cfgErr(field+".start", "%s is outside the bounds %s to %s: quiet hours must cover 21:00 to 08:00",
				w.Start, formatClock(quietStartMin), formatClock(quietStartMax))
		}
		q.start = m
	}
	if w.End != "" {
		m, ok := parseClock(w.End)
		if !ok {
			return q, cfgErr(field+".end", "%q is not a time of day HH:MM", w.End)
		}
		if m < quietEndMin || m > quietEndMax {
			return q, cfgErr(field+".end", "%s is outside the bounds %s to %s: quiet hours must cover 21:00 to 08:00",
				w.End, formatClock(quietEndMin), formatClock(quietEndMax))
		}
		q.end = m
	}
	return q, nil
}

// compiledCap is a cap ready for evaluation.
type compiledCap struct {
	check  CapCheck // Since unset
	window time.Duration
}

func compileCaps(cfg []CapConfig) ([]compiledCap, error) {
	defs := defaultCaps()
	caps := make([]compiledCap, len(defs), len(defs)+len(cfg))
	for i, d := range defs {
		caps[i] = compiledCap{check: d.check, window: d.window}
	}
	seen := map[string]bool{}
	for i, c := range cfg {
		field := fmt.Sprintf("guardrails.caps[%d]", i)
		if c.Name == "" {
			return nil, cfgErr(field+".name", "is required")
		}
		if seen[c.Name] {
			return nil, cfgErr(field+".name", "duplicate cap %q", c.Name)
		}
		seen[c.Name] = true
		if c.Limit == nil {
			return nil, cfgErr(field+".limit", "is required")
		}
		limit := *c.Limit
		if limit < 0 {
			return nil, cfgErr(field+".limit", "%d is negative", limit)
		}
		if j := slices.IndexFunc(defs, func(d defaultCap) bool { return d.check.Name == c.Name }); j >= 0 {
			// A default cap: only its limit may change, up to its ceiling.
			d := defs[j]
			if c.Channel != "" || len(c.Purposes) > 0 || c.Window != "" {
				return nil, cfgErr(field, "default cap %q: only limit may be changed", c.Name)
			}
			if limit > d.ceiling {
				return nil, cfgErr(field+".limit", "%d is above the ceiling %d of default cap %q", limit, d.ceiling, c.Name)
			}
			caps[j].check.Limit = limit
			continue
		}
		cc := compiledCap{check: CapCheck{Name: c.Name, Limit: limit}}
		if c.Channel != "" && c.Channel != "any" {
			ch, ok := parseChannel(c.Channel)
			if !ok {
				return nil, cfgErr(field+".channel", "unknown channel %q", c.Channel)
			}
			cc.check.Channel = ch
		}
		if len(c.Purposes) == 0 {
			cc.check.Purposes = PurposesOf(PurposeService, PurposeCollections, PurposeMarketing)
		}
		for k, p := range c.Purposes {
			pp, ok := parsePurpose(p)
			if !ok {
				return nil, cfgErr(fmt.Sprintf("%s.purposes[%d]", field, k), "unknown purpose %q", p)
			}
			cc.check.Purposes |= PurposesOf(pp)
		}
		w, ok := parseDuration(c.Window)
		if !ok {
			return nil, cfgErr(field+".window", "%q is not a duration", c.Window)
		}
		ceil, ok := capCeiling(w)
		if !ok {
			return nil, cfgErr(field+".window", "%q must be 24h, 7d or 30d", c.Window)
		}
		if limit > ceil {
			return nil, cfgErr(field+".limit", "%d is above the ceiling %d for window %s", limit, ceil, c.Window)
		}
		cc.window = w
		caps = append(caps, cc)
	}
	return caps, nil
}

func compileChannels(field string, names []string) ([]Channel, error) {
	if len(names) == 0 {
		return []Channel{ChannelEmail, ChannelSMS, ChannelPush}, nil
	}
	out := make([]Channel, 0, len(names))
	for i, n := range names {
		ch, ok := parseChannel(n)
		if !ok {
			return nil, cfgErr(fmt.Sprintf("%s[%d]", field, i), "unknown channel %q", n)
		}
		if slices.Contains(out, ch) {
			return nil, cfgErr(fmt.Sprintf("%s[%d]", field, i), "duplicate channel %q", n)
		}
		out = append(out, ch)
	}
	return out, nil
}
