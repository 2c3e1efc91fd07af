/*
 * sipwarden.edge._batchio: a UDP socket's datagrams in batches.
 *
 * Two functions, each an exact twin of a pure-Python function in
 * edge/batchio.py (the tests check both give the same results):
 *
 *   recv(fd, limit, size) -> (datagrams, truncated, error)
 *       at most `limit` datagrams waiting on a non-blocking UDP socket, read
 *       with one recvmmsg(2): a list of (data, host, port), host as
 *       inet_ntop(3) writes it (IPv6 compressed, no scope); `truncated`:
 *       how many were longer than `size` bytes (dropped); `error`: the errno
 *       of a failed read other than EAGAIN (0: none). Never blocks.
 *   send(fd, datagrams) -> failures
 *       a list of (data, host, port) sent in order with sendmmsg(2), as few
 *       calls as the kernel allows; one the kernel refuses is skipped and
 *       the rest still go: failures is a list of (index, errno).
 *
 * Why: one system call per batch, not one per datagram, and no event-loop
 * callback per datagram. Bounds: at most RECV_MAX datagrams a read, their
 * buffer (limit x size bytes) allocated once and kept; sends go out in
 * chunks of SEND_CHUNK. The GIL is held throughout: the calls never block.
 * The sender's host string is cached (a small direct-mapped table), so the
 * same source gives the same str object, hash already computed.
 */
#define PY_SSIZE_T_CLEAN
#define _GNU_SOURCE
#include <Python.h>
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <string.h>
#include <sys/socket.h>

#define RECV_MAX 1024
#define SEND_CHUNK 64
#define HOST_CACHE 256

static char *slab;           /* RECV_MAX x size bytes at most: the datagrams land here */
static int reading;          /* a read is turning the slab into objects (a finalizer run by
                                the GC meanwhile must not read into it) */
static size_t slab_size;
static struct mmsghdr rmsgs[RECV_MAX];
static struct iovec riov[RECV_MAX];
static struct sockaddr_storage raddr[RECV_MAX];

/* the last host strings made, by address: a busy source's str is reused */
static struct {
    int family;
    unsigned char addr[16];
    PyObject *host;
} hosts[HOST_CACHE];

static PyObject *host_of(const struct sockaddr_storage *ss, int *port) {
    const unsigned char *raw;
    size_t len;
    int family = ss->ss_family;
    if (family == AF_INET) {
        const struct sockaddr_in *sin = (const struct sockaddr_in *)ss;
        raw = (const unsigned char *)&sin->sin_addr;
        len = 4;
        *port = ntohs(sin->sin_port);
    } else if (family == AF_INET6) {
        const struct sockaddr_in6 *sin6 = (const struct sockaddr_in6 *)ss;
        raw = (const unsigned char *)&sin6->sin6_addr;
        len = 16;
        *port = ntohs(sin6->sin6_port);
    } else {
        PyErr_Format(PyExc_OSError, "a datagram from an address of family %d", family);
        return NULL;
    }
    unsigned h = (unsigned)family;
    for (size_t i = 0; i < len; i++)
        h = h * 31u + raw[i];
    h %= HOST_CACHE;
    if (hosts[h].host != NULL && hosts[h].family == family && memcmp(hosts[h].addr, raw, len) == 0) {
        Py_INCREF(hosts[h].host);
        return hosts[h].host;
    }
    char text[INET6_ADDRSTRLEN];
    if (inet_ntop(family, raw, text, sizeof text) == NULL)
        return PyErr_SetFromErrno(PyExc_OSError);
    PyObject *host = PyUnicode_FromString(text);
    if (host == NULL)
        return NULL;
    Py_XSETREF(hosts[h].host, Py_NewRef(host));
    hosts[h].family = family;
    memcpy(hosts[h].addr, raw, len);
    return host;
}

static PyObject *batch_recv(PyObject *self, PyObject *args) {
    int fd;
    Py_ssize_t limit, size;
    if (!PyArg_ParseTuple(args, "inn:recv", &fd, &limit, &size))
        return NULL;
    if (limit < 1 || limit > RECV_MAX || size < 1 || size > (1 << 20)) {
        PyErr_Format(PyExc_ValueError, "limit must be 1..%d and size 1..1048576", RECV_MAX);
        return NULL;
    }
    if (reading) {
        PyErr_SetString(PyExc_RuntimeError, "recv called while a recv is in progress");
        return NULL;
    }
    size_t need = (size_t)limit * (size_t)size;
    if (need > slab_size) {
        char *bigger = PyMem_RawRealloc(slab, need);
        if (bigger == NULL)
            return PyErr_NoMemory();
        slab = bigger;
        slab_size = need;
    }
    for (Py_ssize_t i = 0; i < limit; i++) {
        riov[i].iov_base = slab + (size_t)i * (size_t)size;
        riov[i].iov_len = (size_t)size;
        memset(&rmsgs[i].msg_hdr, 0, sizeof rmsgs[i].msg_hdr);
        rmsgs[i].msg_hdr.msg_iov = &riov[i];
        rmsgs[i].msg_hdr.msg_iovlen = 1;
        rmsgs[i].msg_hdr.msg_name = &raddr[i];
        rmsgs[i].msg_hdr.msg_namelen = sizeof raddr[i];
    }
    int n;
    do {
        n = recvmmsg(fd, rmsgs, (unsigned)limit, MSG_DONTWAIT, NULL);
    } while (n < 0 && errno == EINTR);
    int error = 0;
    if (n < 0) {
        if (errno != EAGAIN && errno != EWOULDBLOCK)
            error = errno;
        n = 0;
    }
    reading = 1;
    PyObject *out = PyList_New(0);
    if (out == NULL)
        goto fail;
    long truncated = 0;
    for (int i = 0; i < n; i++) {
        if (rmsgs[i].msg_hdr.msg_flags & MSG_TRUNC) {
            truncated++;
            continue;
        }
        int port = 0;
        PyObject *host = host_of(&raddr[i], &port);
        if (host == NULL)
            goto fail;
        PyObject *item = Py_BuildValue("(y#Ni)", (char *)riov[i].iov_base,
                                       (Py_ssize_t)rmsgs[i].msg_len, host, port);
        if (item == NULL)
            goto fail;
        int appended = PyList_Append(out, item);
        Py_DECREF(item);
        if (appended < 0)
            goto fail;
    }
    reading = 0;
    return Py_BuildValue("(Nli)", out, truncated, error);
fail:
    reading = 0;
    Py_XDECREF(out);
    return NULL;
}

/* One (data, host, port) into a message; -1 with a Python error for a bad
 * item (not a tuple of three), else 0, with *bad the errno of an address
 * that is not an IP address (the item is then reported, not sent). */
static int prepare(PyObject *item, struct mmsghdr *msg, struct iovec *iov,
                   struct sockaddr_storage *ss, Py_buffer *view, int *bad) {
    *bad = 0;
    if (!PyTuple_Check(item) || PyTuple_GET_SIZE(item) != 3) {
        PyErr_SetString(PyExc_TypeError, "each datagram is a (data, host, port) tuple");
        return -1;
    }
    PyObject *data = PyTuple_GET_ITEM(item, 0);
    PyObject *host = PyTuple_GET_ITEM(item, 1);
    long port = PyLong_AsLong(PyTuple_GET_ITEM(item, 2));
    if (port == -1 && PyErr_Occurred())
        return -1;
    const char *text = PyUnicode_AsUTF8(host);
    if (text == NULL)
        return -1;
    if (PyObject_GetBuffer(data, view, PyBUF_SIMPLE) < 0)
        return -1;
    memset(ss, 0, sizeof *ss);
    if (port < 0 || port > 65535) {
        *bad = EINVAL;
    } else if (strchr(text, ':') != NULL) {
        struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)ss;
        sin6->sin6_family = AF_INET6;
        sin6->sin6_port = htons((unsigned short)port);
        if (inet_pton(AF_INET6, text, &sin6->sin6_addr) != 1)
            *bad = EINVAL;
        msg->msg_hdr.msg_namelen = sizeof *sin6;
    } else {
        struct sockaddr_in *sin = (struct sockaddr_in *)ss;
        sin->sin_family = AF_INET;
        sin->sin_port = htons((unsigned short)port);
        if (inet_pton(AF_INET, text, &sin->sin_addr) != 1)
            *bad = EINVAL;
        msg->msg_hdr.msg_namelen = sizeof *sin;
    }
    iov->iov_base = view->buf;
    iov->iov_len = (size_t)view->len;
    msg->msg_hdr.msg_name = ss;
    msg->msg_hdr.msg_iov = iov;
    msg->msg_hdr.msg_iovlen = 1;
    msg->msg_hdr.msg_control = NULL;
    msg->msg_hdr.msg_controllen = 0;
    msg->msg_hdr.msg_flags = 0;
    msg->msg_len = 0;
    return 0;
}

static int failed(PyObject *failures, Py_ssize_t index, int error) {
    PyObject *pair = Py_BuildValue("(ni)", index, error);
    if (pair == NULL)
        return -1;
    int appended = PyList_Append(failures, pair);
    Py_DECREF(pair);
    return appended;
}

static PyObject *batch_send(PyObject *self, PyObject *args) {
    int fd;
    PyObject *items;
    if (!PyArg_ParseTuple(args, "iO!:send", &fd, &PyList_Type, &items))
        return NULL;
    PyObject *failures = PyList_New(0);
    if (failures == NULL)
        return NULL;
    struct mmsghdr msgs[SEND_CHUNK];
    struct iovec iov[SEND_CHUNK];
    struct sockaddr_storage addrs[SEND_CHUNK];
    Py_buffer views[SEND_CHUNK];
    Py_ssize_t index[SEND_CHUNK]; /* the item each message is */
    Py_ssize_t total = PyList_GET_SIZE(items), next = 0;
    while (next < total) {
        /* a chunk of sendable messages; bad addresses reported, not sent */
        int count = 0;
        while (count < SEND_CHUNK && next < total) {
            int bad;
            if (prepare(PyList_GET_ITEM(items, next), &msgs[count], &iov[count], &addrs[count],
                        &views[count], &bad) < 0)
                goto fail_chunk;
            if (bad) {
                PyBuffer_Release(&views[count]);
                if (failed(failures, next, bad) < 0)
                    goto fail_chunk;
            } else {
                index[count++] = next;
            }
            next++;
        }
        int done = 0;
        while (done < count) {
            int sent = sendmmsg(fd, &msgs[done], (unsigned)(count - done), MSG_DONTWAIT);
            if (sent < 0 && errno == EINTR)
                continue;
            if (sent <= 0) { /* the first of the rest was refused: skip it, send the others */
                int error = sent < 0 ? errno : EAGAIN;
                if (failed(failures, index[done], error) < 0)
                    goto fail_chunk;
                done++;
            } else {
                done += sent;
            }
        }
        for (int i = 0; i < count; i++)
            PyBuffer_Release(&views[i]);
        continue;
    fail_chunk:
        for (int i = 0; i < count; i++)
            PyBuffer_Release(&views[i]);
        Py_DECREF(failures);
        return NULL;
    }
    return failures;
}

static PyMethodDef methods[] = {
    {"recv", batch_recv, METH_VARARGS,
     "recv(fd, limit, size) -> ([(data, host, port)], truncated, errno): one recvmmsg."},
    {"send", batch_send, METH_VARARGS,
     "send(fd, [(data, host, port)]) -> [(index, errno)]: sendmmsg, refused ones skipped."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, .m_name = "_batchio", .m_size = -1, .m_methods = methods,
};

PyMODINIT_FUNC PyInit__batchio(void) {
    PyObject *m = PyModule_Create(&module);
    if (m != NULL && PyModule_AddIntConstant(m, "RECV_MAX", RECV_MAX) < 0) {
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
