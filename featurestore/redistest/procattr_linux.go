package redistest

import (
	"os/exec"
	"syscall"
)

// DieWithParent makes cmd, not yet started, receive SIGKILL when the test process dies, so a
// test binary killed by its timeout leaves no redis-server or helper process behind.
func DieWithParent(cmd *exec.Cmd) {
	if cmd.SysProcAttr == nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{}
	}
	cmd.SysProcAttr.Pdeathsig = syscall.SIGKILL
}
