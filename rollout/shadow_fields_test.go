package rollout

import (
	"testing"
	"time"

	"github.com/arbiter-dev/arbiter/decision"
	"github.com/google/go-cmp/cmp"
)

func TestChangedFields(t *testing.T) {
	at := time.Date(2026, 12, 5, 8, 0, 0, 0, time.UTC)
	msg := func(ch decision.Channel, tmpl string) *decision.Result {
		return &decision.Result{Action: decision.ActionMessage, Message: &decision.Message{Channel: ch, TemplateID: tmpl, SendAt: at}}
	}
	active := msg(decision.ChannelSMS, "overdue_reminder")
	tests := []struct {
		name   string
		shadow *decision.Result
		want   []string
	}{
		{"same", msg(decision.ChannelSMS, "overdue_reminder"), nil},
		{"channel and template", msg(decision.ChannelEmail, "overdue_gentle"), []string{"channel", "template"}},
		{"template only", msg(decision.ChannelSMS, "overdue_gentle"), []string{"template"}},
		{"action", &decision.Result{Action: decision.ActionSuppress, Suppress: &decision.Suppress{}}, []string{"action"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if diff := cmp.Diff(tc.want, changedFields(active, tc.shadow)); diff != "" {
				t.Errorf("changedFields(SMS/overdue_reminder, %s) diff (-want +got):\n%s", tc.name, diff)
			}
		})
	}
}
