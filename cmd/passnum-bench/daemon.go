package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
)

// daemon is passnumd running as a child process.
type daemon struct {
	cmd         *exec.Cmd
	log         *os.File
	grpcAddr    string
	metricsAddr string
	exited      chan struct{}
	waitErr     error
}

// startDaemon runs `passnumd serve` on dbURL with the keys k, listening on free
// loopback ports, its JSON log (one line per RPC, level info as in production) going to
// logPath, and waits until its health service answers SERVING.
func startDaemon(ctx context.Context, bin, dbURL string, k *keys, logPath string) (*daemon, error) {
	grpcPort, err := freePort()
	if err != nil {
		return nil, err
	}
	metricsPort, err := freePort()
	if err != nil {
		return nil, err
	}
	d := &daemon{
		grpcAddr:    net.JoinHostPort("127.0.0.1", strconv.Itoa(grpcPort)),
		metricsAddr: net.JoinHostPort("127.0.0.1", strconv.Itoa(metricsPort)),
		exited:      make(chan struct{}),
	}
	if d.log, err = os.Create(logPath); err != nil {
		return nil, err
	}
	d.cmd = exec.Command(bin, "serve", "-listen", d.grpcAddr, "-metrics-listen", d.metricsAddr,
		"-jwks", k.jwks, "-voucher-keys", k.vouchers, "-reflection=false", "-log-level", "info")
	d.cmd.Env = append(os.Environ(), "DATABASE_URL="+dbURL)
	d.cmd.Stdout, d.cmd.Stderr = d.log, d.log
	if err := d.cmd.Start(); err != nil {
		d.log.Close()
		return nil, fmt.Errorf("start passnumd: %w", err)
	}
	go func() {
		d.waitErr = d.cmd.Wait()
		close(d.exited)
	}()
	if err := d.waitServing(ctx, 60*time.Second); err != nil {
		d.stop()
		return nil, fmt.Errorf("passnumd did not start: %w\n%s", err, tail(logPath, 20))
	}
	return d, nil
}

func (d *daemon) waitServing(ctx context.Context, limit time.Duration) error {
	conn, err := grpc.NewClient(d.grpcAddr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return err
	}
	defer conn.Close()
	health := healthpb.NewHealthClient(conn)
	deadline := time.Now().Add(limit)
	for {
		select {
		case <-d.exited:
			return fmt.Errorf("passnumd exited: %v", d.waitErr)
		case <-ctx.Done():
			return ctx.Err()
		default:
		}
		cctx, cancel := context.WithTimeout(ctx, time.Second)
		resp, err := health.Check(cctx, &healthpb.HealthCheckRequest{})
		cancel()
		if err == nil && resp.GetStatus() == healthpb.HealthCheckResponse_SERVING {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("not serving after %v: %v", limit, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// stop sends SIGTERM and waits for a graceful exit, then kills.
func (d *daemon) stop() error {
	defer d.log.Close()
	select {
	case <-d.exited:
		return d.waitErr
	default:
	}
	if err := d.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		return err
	}
	select {
	case <-d.exited:
		return d.waitErr
	case <-time.After(30 * time.Second):
		d.cmd.Process.Kill()
		<-d.exited
		return errors.New("passnumd did not stop within 30 s of SIGTERM; killed")
	}
}

// memory reads passnumd's peak resident set (VmHWM) and current one (VmRSS), in MiB.
func (d *daemon) memory() (peak, current float64, err error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", d.cmd.Process.Pid))
	if err != nil {
		return 0, 0, err
	}
	field := func(name string) (float64, error) {
		for _, line := range strings.Split(string(b), "\n") {
			if rest, ok := strings.CutPrefix(line, name+":"); ok {
				kb, err := strconv.ParseFloat(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 64)
				return kb / 1024, err
			}
		}
		return 0, fmt.Errorf("no %s in /proc/%d/status", name, d.cmd.Process.Pid)
	}
	if peak, err = field("VmHWM"); err != nil {
		return 0, 0, err
	}
	current, err = field("VmRSS")
	return peak, current, err
}

// cpuProfile fetches a CPU profile of passnumd over seconds from its pprof endpoint.
func (d *daemon) cpuProfile(ctx context.Context, seconds int, w io.Writer) error {
	url := fmt.Sprintf("http://%s/debug/pprof/profile?seconds=%d", d.metricsAddr, seconds)
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: %s", url, resp.Status)
	}
	_, err = io.Copy(w, resp.Body)
	return err
}

// freePort asks the kernel for a free loopback port.
func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// tail returns the last lines of a file, for error messages.
func tail(path string, lines int) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return ""
	}
	all := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	return strings.Join(all[max(0, len(all)-lines):], "\n")
}
