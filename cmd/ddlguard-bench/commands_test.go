package main

import (
	"bytes"
	"context"
	"strings"
	"testing"
)

// Bad flags are refused before anything starts (the options are checked
// as parsed, not as they were before parsing).
func TestCommandsRefuseBadOptions(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel() // anything that tried to start a cluster would fail, not hang
	for _, c := range []struct {
		name string
		run  func(context.Context, []string, *bytes.Buffer, *bytes.Buffer) int
		args []string
		want string
	}{
		{"seed", func(ctx context.Context, a []string, o, e *bytes.Buffer) int { return seedCommand(ctx, a, o, e) }, []string{"--readers", "0"}, "--readers"},
		{"profile", func(ctx context.Context, a []string, o, e *bytes.Buffer) int { return profileCommand(ctx, a, o, e) }, []string{"--clients", "0"}, "--clients"},
		{"relay", func(ctx context.Context, a []string, o, e *bytes.Buffer) int { return relayCommand(ctx, a, o, e) }, []string{"--clients", "x"}, "--clients"},
		{"variant setting", func(ctx context.Context, a []string, o, e *bytes.Buffer) int { return relayCommand(ctx, a, o, e) }, []string{"--ddlguard-env-b", "EVENT_LOOP_SPIN=1ms"}, "--ddlguard-env-b: \"EVENT_LOOP_SPIN=1ms\" is not DDLGUARD_NAME=VALUE"},
		{"extra argument", func(ctx context.Context, a []string, o, e *bytes.Buffer) int { return seedCommand(ctx, a, o, e) }, []string{"extra"}, "unexpected arguments"},
	} {
		var out, errOut bytes.Buffer
		if code := c.run(ctx, c.args, &out, &errOut); code != exitUsage || !strings.Contains(errOut.String(), c.want) {
			t.Errorf("%s %v: exit %d, stderr %q; want exit %d naming %s", c.name, c.args, code, errOut.String(), exitUsage, c.want)
		}
	}
}

func TestSettingsList(t *testing.T) {
	got, err := settingsList(" DDLGUARD_EVENT_LOOP_SPIN=200us, DDLGUARD_LOG_LEVEL=warn ")
	if err != nil || strings.Join(got, " ") != "DDLGUARD_EVENT_LOOP_SPIN=200us DDLGUARD_LOG_LEVEL=warn" {
		t.Errorf("settingsList = %q, %v", got, err)
	}
	for _, bad := range []string{"DDLGUARD_EVENT_LOOP_SPIN", "PATH=/x", "DDLGUARD_=1"} {
		if _, err := settingsList(bad); err == nil {
			t.Errorf("settingsList(%q) accepted it", bad)
		}
	}
}
