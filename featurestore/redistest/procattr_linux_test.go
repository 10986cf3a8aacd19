package redistest

import (
	"bufio"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"syscall"
	"testing"
	"time"
)

// TestDieWithParentHelper is not a test: TestDieWithParent runs the test binary with it, and
// the process starts a long sleep with DieWithParent, prints its pid and waits to be killed.
func TestDieWithParentHelper(t *testing.T) {
	if os.Getenv("REDISTEST_DIE_HELPER") != "1" {
		t.Skip("the parent process of TestDieWithParent")
	}
	child := exec.Command("sleep", "60")
	DieWithParent(child)
	if err := child.Start(); err != nil {
		fmt.Println("error", err)
		os.Exit(1)
	}
	fmt.Println(child.Process.Pid)
	time.Sleep(time.Minute)
	os.Exit(0)
}

// TestDieWithParent kills a parent process with SIGKILL and checks that its child, started
// with DieWithParent, is gone too.
func TestDieWithParent(t *testing.T) {
	parent := exec.Command(os.Args[0], "-test.run=^TestDieWithParentHelper$")
	parent.Env = append(os.Environ(), "REDISTEST_DIE_HELPER=1")
	out, err := parent.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := parent.Start(); err != nil {
		t.Fatal(err)
	}
	line, err := bufio.NewReader(out).ReadString('\n')
	if err != nil {
		t.Fatalf("read the child's pid: %v", err)
	}
	pid, err := strconv.Atoi(line[:len(line)-1])
	if err != nil {
		t.Fatalf("the helper said %q, want a pid", line)
	}
	_ = parent.Process.Kill()
	_ = parent.Wait()
	// The child is killed and, orphaned, reaped by init: signal 0 then fails.
	for deadline := time.Now().Add(5 * time.Second); syscall.Kill(pid, 0) == nil; time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			_ = syscall.Kill(pid, syscall.SIGKILL)
			t.Fatalf("the child (pid %d) is alive 5s after its parent was killed", pid)
		}
	}
}
