package main

import (
	"context"
	"errors"
	"io"
)

// runFeatures is the "features" command. TODO: not built yet.
func runFeatures(ctx context.Context, args []string, env func(string) string, stdin io.Reader, stdout, stderr io.Writer) error {
	return errors.New("features: not implemented yet")
}
