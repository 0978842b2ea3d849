package sysraw

import (
	"bytes"
	"testing"
	"unsafe"

	"golang.org/x/sys/unix"
)

func TestReadWriteNonBlockingPipe(t *testing.T) {
	var fds [2]int
	if err := unix.Pipe2(fds[:], unix.O_NONBLOCK|unix.O_CLOEXEC); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { unix.Close(fds[0]); unix.Close(fds[1]) })
	buf := make([]byte, 16)
	if n, e := Read(fds[0], buf); e != unix.EAGAIN {
		t.Fatalf("read of an empty pipe = %d, %v; want EAGAIN", n, e)
	}
	msg := []byte("ferry")
	if n, e := Write(fds[1], msg); n != len(msg) || e != 0 {
		t.Fatalf("write = %d, %v; want %d, 0", n, e, len(msg))
	}
	n, e := Read(fds[0], buf)
	if e != 0 || !bytes.Equal(buf[:n], msg) {
		t.Fatalf("read = %q, %v; want %q", buf[:n], e, msg)
	}
	if n, e := Write(-1, msg); e != unix.EBADF {
		t.Fatalf("write to fd -1 = %d, %v; want EBADF", n, e)
	}
}

// mmsghdr is struct mmsghdr on 64-bit Linux.
type mmsghdr struct {
	hdr unix.Msghdr
	len uint32
	_   [4]byte
}

func TestMmsgOverLoopbackUDP(t *testing.T) {
	rx, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(rx)
	if err := unix.Bind(rx, &unix.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}}); err != nil {
		t.Fatal(err)
	}
	sa, err := unix.Getsockname(rx)
	if err != nil {
		t.Fatal(err)
	}
	tx, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(tx)
	if err := unix.Connect(tx, sa); err != nil {
		t.Fatal(err)
	}

	var hdrs [2]mmsghdr
	if n, e := RecvMmsg(rx, unsafe.Pointer(&hdrs[0]), len(hdrs)); e != unix.EAGAIN {
		t.Fatalf("recvmmsg on an empty socket = %d, %v; want EAGAIN", n, e)
	}
	payloads := [][]byte{[]byte("one"), []byte("three")}
	var iovs [2]unix.Iovec
	for i, p := range payloads {
		iovs[i].Base = &p[0]
		iovs[i].SetLen(len(p))
		hdrs[i].hdr.Iov = &iovs[i]
		hdrs[i].hdr.SetIovlen(1)
	}
	if n, e := SendMmsg(tx, unsafe.Pointer(&hdrs[0]), 2); n != 2 || e != 0 {
		t.Fatalf("sendmmsg = %d, %v; want 2, 0", n, e)
	}
	bufs := [2][16]byte{}
	for i := range hdrs {
		iovs[i].Base = &bufs[i][0]
		iovs[i].SetLen(len(bufs[i]))
		hdrs[i] = mmsghdr{}
		hdrs[i].hdr.Iov = &iovs[i]
		hdrs[i].hdr.SetIovlen(1)
	}
	n, e := RecvMmsg(rx, unsafe.Pointer(&hdrs[0]), len(hdrs))
	if n != 2 || e != 0 {
		t.Fatalf("recvmmsg = %d, %v; want 2, 0", n, e)
	}
	for i, p := range payloads {
		if got := bufs[i][:hdrs[i].len]; !bytes.Equal(got, p) {
			t.Errorf("message %d = %q, want %q", i, got, p)
		}
	}
}
