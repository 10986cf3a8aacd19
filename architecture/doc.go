// Package architecture holds no code: its test checks the import rules of
// docs/architecture.md on every package of the module, so that a change that breaks a layer
// fails `make test`.
package architecture
