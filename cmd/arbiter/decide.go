package main

import (
	"context"
	"errors"
	"io"
)

// runDecide is the "decide" command. TODO: not built yet.
func runDecide(ctx context.Context, args []string, env func(string) string, stdin io.Reader, stdout, stderr io.Writer) error {
	return errors.New("decide: not implemented yet")
}
