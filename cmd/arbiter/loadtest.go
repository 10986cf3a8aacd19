package main

import (
	"context"
	"errors"
	"io"
)

// runLoadtest is the "loadtest" command. TODO: not built yet.
func runLoadtest(ctx context.Context, args []string, env func(string) string, stdin io.Reader, stdout, stderr io.Writer) error {
	return errors.New("loadtest: not implemented yet")
}
