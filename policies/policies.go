// Package policies embeds the policy bundles that ship with Arbiter.
//
// Default holds the folder "default": the default policy bundle (rules.yaml and friends) and
// its test cases under default/tests. decision.DefaultPolicy compiles it.
package policies

import "embed"

// Default is the file system holding the default bundle in its folder "default".
//
//go:embed default
var Default embed.FS
