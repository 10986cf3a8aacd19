package main

import (
	"context"
	"errors"
	"io"
)

// runPolicy is the "policy" command. TODO: not built yet.
func runPolicy(ctx context.Context, args []string, env func(string) string, stdin io.Reader, stdout, stderr io.Writer) error {
	return errors.New("policy: not implemented yet")
}
