/*
 * tern-tapfd: gives a running QEMU a tap device that lives in another network
 * namespace. A VM from the warm pool was launched outside its pod's network
 * namespace, so QEMU cannot open the pod's tap by name; this helper enters
 * that namespace, opens the tap there and hands the open file to QEMU over a
 * QMP monitor with SCM_RIGHTS (getfd), then creates the netdev from it
 * (netdev_add ... fd=NAME) on the same monitor, as QMP keeps passed files
 * per monitor. Node cannot pass file descriptors, hence C.
 *
 * usage: tern-tapfd NETNS_PATH TAP_NAME QMP_SOCKET NETDEV_ID
 * Exit 0 when QEMU has the netdev; otherwise 1 with the reason on stderr.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <linux/if.h>
#include <linux/if_tun.h>
#include <poll.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#define REPLY_TIMEOUT_MS 10000

static void die(const char *what)
{
	fprintf(stderr, "tern-tapfd: %s: %s\n", what, strerror(errno));
	exit(1);
}

static void fail(const char *msg, const char *detail)
{
	fprintf(stderr, "tern-tapfd: %s%s%s\n", msg, detail ? ": " : "", detail ? detail : "");
	exit(1);
}

/* Reads QMP lines until one is a reply ("return" or "error"); events are skipped. */
static void expect_return(int s, const char *what)
{
	static char buf[65536];
	static size_t len;
	for (;;) {
		char *nl;
		while ((nl = memchr(buf, '\n', len)) != NULL) {
			size_t n = (size_t)(nl - buf) + 1;
			*nl = '\0';
			int is_return = strstr(buf, "\"return\"") != NULL;
			int is_error = strstr(buf, "\"error\"") != NULL;
			if (is_error)
				fail(what, buf);
			memmove(buf, buf + n, len - n);
			len -= n;
			if (is_return)
				return;
		}
		if (len == sizeof(buf))
			fail(what, "QMP line too long");
		struct pollfd p = { .fd = s, .events = POLLIN };
		int r = poll(&p, 1, REPLY_TIMEOUT_MS);
		if (r < 0)
			die("poll");
		if (r == 0)
			fail(what, "no reply from QEMU within 10 s");
		ssize_t got = read(s, buf + len, sizeof(buf) - len);
		if (got < 0)
			die("read from QMP");
		if (got == 0)
			fail(what, "QMP connection closed");
		len += (size_t)got;
	}
}

static void send_all(int s, const char *msg, int fd)
{
	struct iovec iov = { .iov_base = (void *)msg, .iov_len = strlen(msg) };
	union {
		char buf[CMSG_SPACE(sizeof(int))];
		struct cmsghdr align;
	} u;
	struct msghdr m = { .msg_iov = &iov, .msg_iovlen = 1 };
	if (fd >= 0) {
		memset(&u, 0, sizeof(u));
		m.msg_control = u.buf;
		m.msg_controllen = sizeof(u.buf);
		struct cmsghdr *c = CMSG_FIRSTHDR(&m);
		c->cmsg_level = SOL_SOCKET;
		c->cmsg_type = SCM_RIGHTS;
		c->cmsg_len = CMSG_LEN(sizeof(int));
		memcpy(CMSG_DATA(c), &fd, sizeof(int));
	}
	if (sendmsg(s, &m, MSG_NOSIGNAL) != (ssize_t)iov.iov_len)
		die("write to QMP");
}

/* Names go into JSON unescaped: allow only what interface names and QEMU ids use. */
static int plain_name(const char *s, size_t max)
{
	size_t n = strlen(s);
	if (n == 0 || n > max)
		return 0;
	for (size_t i = 0; i < n; i++) {
		char c = s[i];
		if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' || c == '_' || c == '.'))
			return 0;
	}
	return 1;
}

int main(int argc, char **argv)
{
	if (argc != 5)
		fail("usage: tern-tapfd NETNS_PATH TAP_NAME QMP_SOCKET NETDEV_ID", NULL);
	const char *netns = argv[1], *tap = argv[2], *qmp = argv[3], *id = argv[4];
	if (!plain_name(tap, IFNAMSIZ - 1))
		fail("bad tap name", tap);
	if (!plain_name(id, 31))
		fail("bad netdev id", id);
	struct sockaddr_un addr = { .sun_family = AF_UNIX };
	if (strlen(qmp) >= sizeof(addr.sun_path))
		fail("QMP socket path too long", qmp);
	strcpy(addr.sun_path, qmp);

	/* The QMP socket is a path on the host file system: connect before changing namespace. */
	int s = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (s < 0)
		die("socket");
	if (connect(s, (struct sockaddr *)&addr, sizeof(addr)) < 0)
		die(qmp);

	int ns = open(netns, O_RDONLY | O_CLOEXEC);
	if (ns < 0)
		die(netns);
	if (setns(ns, CLONE_NEWNET) < 0)
		die("setns");
	close(ns);
	int t = open("/dev/net/tun", O_RDWR | O_CLOEXEC);
	if (t < 0)
		die("/dev/net/tun");
	struct ifreq ifr;
	memset(&ifr, 0, sizeof(ifr));
	ifr.ifr_flags = IFF_TAP | IFF_NO_PI | IFF_VNET_HDR;
	strcpy(ifr.ifr_name, tap);
	if (ioctl(t, TUNSETIFF, &ifr) < 0)
		die(tap);

	/* The greeting is neither a return nor an error: expect_return skips it like an event. */
	send_all(s, "{\"execute\":\"qmp_capabilities\"}\n", -1);
	expect_return(s, "qmp_capabilities");
	char cmd[256];
	snprintf(cmd, sizeof(cmd), "{\"execute\":\"getfd\",\"arguments\":{\"fdname\":\"%s\"}}\n", id);
	send_all(s, cmd, t);
	expect_return(s, "getfd");
	close(t);
	snprintf(cmd, sizeof(cmd), "{\"execute\":\"netdev_add\",\"arguments\":{\"type\":\"tap\",\"id\":\"%s\",\"fd\":\"%s\"}}\n", id, id);
	send_all(s, cmd, -1);
	expect_return(s, "netdev_add");
	close(s);
	return 0;
}
