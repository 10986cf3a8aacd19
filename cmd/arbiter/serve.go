package main

import (
	"context"
	"errors"
	"io"
)

// runServe is the "serve" command. TODO: not built yet.
func runServe(ctx context.Context, args []string, env func(string) string, stdin io.Reader, stdout, stderr io.Writer) error {
	return errors.New("serve: not implemented yet")
}
