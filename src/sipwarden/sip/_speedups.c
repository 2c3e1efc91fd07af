/*
 * sipwarden.sip._speedups: the per-packet hot path in C.
 *
 * Three functions, each an exact, faster twin of a pure-Python function in
 * this package, for the shapes that nearly all real traffic has. Each returns
 * None for anything else, and the caller then takes the Python path, so the
 * result is always the one the Python code gives (the test suite checks the
 * twins against each other on the corpus and on generated input):
 *
 *   scan(data)        -> peek's framing, start line and header index
 *                        (peek.py: _peek_python)
 *   name_addr(text)   -> the simple name-addr / addr-spec shape
 *                        (address.py: name_addr_parts)
 *   via(text)         -> the simple Via shape (fields.py: via_parts)
 *   split(data)       -> parse's framing and header split, with the
 *                        key -> values index (message.py: parse_python)
 *
 * Goals: no allocation beyond the result, one pass over the bytes, no
 * recursion, and nothing a hostile packet can make slow (every loop advances).
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <string.h>

/* ------------------------------------------------------------------ tables */

enum { CH_TOKEN = 1, CH_USER = 2, CH_UPNAME = 4, CH_UPVAL = 8, CH_HVAL = 16, CH_HOST = 32, CH_V6 = 64 };
static unsigned char ctab[256];

static void init_tables(void) {
    const char *alnum = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    struct { const char *chars; int flag; } sets[] = {
        {"-.!%*_+`'~", CH_TOKEN},
        {"-_.!~*'()&=+$,", CH_USER},
        {"-_.!~*'+", CH_UPNAME},
        {"-_.!~*'()[]/:&+$", CH_UPVAL},
        {"-.!%*_+`'~:[]", CH_HVAL},
        {"-.", CH_HOST},
    };
    for (const char *p = alnum; *p; p++)
        ctab[(unsigned char)*p] |= CH_TOKEN | CH_USER | CH_UPNAME | CH_UPVAL | CH_HVAL | CH_HOST;
    for (size_t i = 0; i < sizeof(sets) / sizeof(sets[0]); i++)
        for (const char *p = sets[i].chars; *p; p++)
            ctab[(unsigned char)*p] |= sets[i].flag;
    for (const char *p = "0123456789abcdefABCDEF:."; *p; p++)
        ctab[(unsigned char)*p] |= CH_V6;
}

#define IS(c, flag) (ctab[(unsigned char)(c)] & (flag))

static Py_ssize_t run(const char *s, Py_ssize_t i, Py_ssize_t n, int flag) {
    while (i < n && IS(s[i], flag))
        i++;
    return i;
}

static PyObject *str_of(const char *s, Py_ssize_t n) {
    return PyUnicode_DecodeUTF8(s, n, "surrogateescape");
}

/* -------------------------------------------------------------------- scan */

/* Header slots, in the order of peek._KEYS. */
#define NSLOTS 15
enum { S_VIA, S_FROM, S_TO, S_CALL_ID, S_CSEQ, S_UA, S_CONTACT, S_CLEN, S_MAXFWD, S_AUTH, S_PAUTH, S_SERVER, S_EXPIRES, S_ROUTE, S_RR };

static const char *const slot_keys[NSLOTS] = {
    "via", "from", "to", "call-id", "cseq", "user-agent", "contact", "content-length",
    "max-forwards", "authorization", "proxy-authorization", "server", "expires", "route", "record-route",
};
/* compact forms of slotted headers */
static const struct { char c; int slot; } compact_slots[] = {
    {'v', S_VIA}, {'f', S_FROM}, {'t', S_TO}, {'i', S_CALL_ID}, {'m', S_CONTACT}, {'l', S_CLEN},
};

/* Spellings recognised as written (case-sensitive, as peek's _SLOT table). */
static int canonical_slot(const char *name, Py_ssize_t n) {
    static const struct { const char *name; int slot; } table[] = {
        {"Via", S_VIA}, {"From", S_FROM}, {"To", S_TO}, {"Call-ID", S_CALL_ID}, {"Call-Id", S_CALL_ID},
        {"CSeq", S_CSEQ}, {"Cseq", S_CSEQ}, {"User-Agent", S_UA}, {"Contact", S_CONTACT},
        {"Content-Length", S_CLEN}, {"Max-Forwards", S_MAXFWD}, {"Authorization", S_AUTH},
        {"Proxy-Authorization", S_PAUTH}, {"Server", S_SERVER}, {"Expires", S_EXPIRES},
        {"VIA", S_VIA}, {"FROM", S_FROM}, {"TO", S_TO}, {"CALL-ID", S_CALL_ID}, {"CSEQ", S_CSEQ},
        {"USER-AGENT", S_UA}, {"CONTACT", S_CONTACT}, {"CONTENT-LENGTH", S_CLEN},
        {"MAX-FORWARDS", S_MAXFWD}, {"AUTHORIZATION", S_AUTH}, {"PROXY-AUTHORIZATION", S_PAUTH},
        {"SERVER", S_SERVER}, {"EXPIRES", S_EXPIRES}, {"Route", S_ROUTE}, {"ROUTE", S_ROUTE},
        {"Record-Route", S_RR}, {"RECORD-ROUTE", S_RR},
    };
    if (n == 1) {
        char c = name[0] | 0x20;
        for (size_t i = 0; i < sizeof(compact_slots) / sizeof(compact_slots[0]); i++)
            if (compact_slots[i].c == c)
                return compact_slots[i].slot;
        return -1;
    }
    for (size_t i = 0; i < sizeof(table) / sizeof(table[0]); i++)
        if ((Py_ssize_t)strlen(table[i].name) == n && memcmp(table[i].name, name, n) == 0)
            return table[i].slot;
    for (int i = 0; i < NSLOTS; i++)
        if ((Py_ssize_t)strlen(slot_keys[i]) == n && memcmp(slot_keys[i], name, n) == 0)
            return i;
    return -1;
}

/* An odd-case spelling of a slotted header ("vIa"): the Python path handles it. */
static int is_odd_case_slot(const char *name, Py_ssize_t n) {
    char low[24]; /* longer than any slotted name */
    if (n >= (Py_ssize_t)sizeof(low))
        return 0;
    for (Py_ssize_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)name[i];
        low[i] = (c >= 'A' && c <= 'Z') ? (char)(c | 0x20) : (char)c;
    }
    if (n == 1) {
        for (size_t i = 0; i < sizeof(compact_slots) / sizeof(compact_slots[0]); i++)
            if (compact_slots[i].c == low[0])
                return 1;
        return 0;
    }
    for (int i = 0; i < NSLOTS; i++)
        if ((Py_ssize_t)strlen(slot_keys[i]) == n && memcmp(slot_keys[i], low, n) == 0)
            return 1;
    return 0;
}

static const char *find_crlfcrlf(const char *s, Py_ssize_t n) {
    const char *p = s, *end = s + n;
    while (p + 3 < end) {
        const char *cr = memchr(p, '\r', (size_t)(end - p - 3));
        if (cr == NULL)
            return NULL;
        if (cr[1] == '\n' && cr[2] == '\r' && cr[3] == '\n')
            return cr;
        p = cr + 1;
    }
    return NULL;
}

/* Any LF in the head that is not part of a CRLF: bare-LF framing and line
 * breaks inside a line are the Python path's to judge. */
static int has_lone_lf(const char *s, Py_ssize_t head_end) {
    const char *p = s, *end = s + head_end;
    while (p < end) {
        const char *lf = memchr(p, '\n', (size_t)(end - p));
        if (lf == NULL)
            return 0;
        if (lf == s || lf[-1] != '\r')
            return 1;
        p = lf + 1;
    }
    return 0;
}

/* The common framing of scan() and split(): a message that starts at byte 0
 * (no leading CRLF), a CRLFCRLF, no lone LF in the head, a start line ended
 * by CRLF. Fills the offsets; 0 means "not the plain shape: defer". */
static int frame_head(const char *s, Py_ssize_t n, Py_ssize_t *head_end, Py_ssize_t *body_at, Py_ssize_t *line_end) {
    if (n < 4 || (s[0] == '\r' && s[1] == '\n'))
        return 0;
    const char *hend = find_crlfcrlf(s, n);
    if (hend == NULL)
        return 0;
    *head_end = hend - s;
    *body_at = *head_end + 4;
    if (has_lone_lf(s, *head_end))
        return 0;
    const char *eol = memchr(s, '\r', (size_t)*head_end);
    *line_end = eol ? eol - s : *head_end;
    return !(eol && eol[1] != '\n');
}

static PyObject *scan(PyObject *self, PyObject *arg) {
    Py_buffer view;
    if (PyObject_GetBuffer(arg, &view, PyBUF_SIMPLE) < 0)
        return NULL;
    const char *s = view.buf;
    Py_ssize_t n = view.len;
    Py_ssize_t vstart[NSLOTS], vend[NSLOTS];
    PyObject *result = NULL, *values = NULL, *a = NULL, *b = NULL, *layout = NULL;
    long status = -1;
    unsigned int repeated = 0; /* slots seen more than once, as bits */

    for (int i = 0; i < NSLOTS; i++)
        vstart[i] = vend[i] = -1;
    Py_ssize_t head_end, body_at, line_end;
    if (!frame_head(s, n, &head_end, &body_at, &line_end))
        goto defer;

    /* start line */
    Py_ssize_t a0 = 0, a1, b0, b1;
    if (line_end >= 8 && memcmp(s, "SIP/2.0 ", 8) == 0) {
        /* SIP/2.0 ddd reason */
        if (line_end < 12 || s[11] != ' ')
            goto defer;
        if (s[8] < '1' || s[8] > '6' || s[9] < '0' || s[9] > '9' || s[10] < '0' || s[10] > '9')
            goto defer;
        status = (s[8] - '0') * 100 + (s[9] - '0') * 10 + (s[10] - '0');
        b0 = 12;
        b1 = line_end;
        a1 = 0;
    } else {
        a1 = run(s, 0, line_end, CH_TOKEN);
        if (a1 == 0 || a1 >= line_end || s[a1] != ' ')
            goto defer;
        b0 = a1 + 1;
        b1 = b0;
        while (b1 < line_end && s[b1] != ' ')
            b1++;
        if (b1 == b0 || line_end - b1 != 8 || memcmp(s + b1, " SIP/2.0", 8) != 0)
            goto defer;
    }

    /* header lines */
    Py_ssize_t pos = line_end + 2;
    while (pos < head_end) {
        const char *nl = memchr(s + pos, '\r', (size_t)(head_end - pos));
        Py_ssize_t le = nl ? nl - s : head_end;
        if (nl && nl[1] != '\n')
            goto defer; /* a lone CR: let Python decide */
        const char *colon = memchr(s + pos, ':', (size_t)(le - pos));
        if (colon == NULL)
            goto defer;
        Py_ssize_t ne = colon - s;
        if (ne == pos || run(s, pos, ne, CH_TOKEN) != ne)
            goto defer; /* folding, space before the colon, a bad name: Python decides */
        int slot = canonical_slot(s + pos, ne - pos);
        if (slot < 0) {
            if (is_odd_case_slot(s + pos, ne - pos))
                goto defer;
        } else if (vstart[slot] < 0) {
            Py_ssize_t v0 = ne + 1, v1 = le;
            while (v0 < v1 && (s[v0] == ' ' || s[v0] == '\t'))
                v0++;
            while (v1 > v0 && (s[v1 - 1] == ' ' || s[v1 - 1] == '\t'))
                v1--;
            vstart[slot] = v0;
            vend[slot] = v1;
        } else if (slot == S_CLEN) {
            goto defer; /* duplicate Content-Length: Python raises */
        } else {
            repeated |= 1u << slot;
        }
        pos = le + 2;
    }

    /* Content-Length present, plain digits, equal to what the datagram holds */
    if (vstart[S_CLEN] < 0)
        goto defer;
    Py_ssize_t clen_digits = vend[S_CLEN] - vstart[S_CLEN];
    if (clen_digits < 1 || clen_digits > 10)
        goto defer;
    long long clen = 0;
    for (Py_ssize_t i = vstart[S_CLEN]; i < vend[S_CLEN]; i++) {
        if (s[i] < '0' || s[i] > '9')
            goto defer;
        clen = clen * 10 + (s[i] - '0');
    }
    if (clen != n - body_at)
        goto defer;

    values = PyTuple_New(NSLOTS);
    if (values == NULL)
        goto error;
    for (int i = 0; i < NSLOTS; i++) {
        PyObject *v;
        if (vstart[i] < 0) {
            v = Py_None;
            Py_INCREF(v);
        } else if ((v = str_of(s + vstart[i], vend[i] - vstart[i])) == NULL) {
            goto error;
        }
        PyTuple_SET_ITEM(values, i, v);
    }
    /* where the proxy's splice path edits: the start line's end, the repeated
     * slots, and the value bounds of the first Via, Max-Forwards, Server,
     * User-Agent and Contact (-1 when absent) */
    layout = Py_BuildValue(
        "(nInnnnnnnnnn)", line_end, repeated, vstart[S_VIA], vend[S_VIA], vstart[S_MAXFWD], vend[S_MAXFWD],
        vstart[S_SERVER], vend[S_SERVER], vstart[S_UA], vend[S_UA], vstart[S_CONTACT], vend[S_CONTACT]);
    if (layout == NULL)
        goto error;
    if (status < 0) {
        if ((a = str_of(s + a0, a1 - a0)) == NULL || (b = str_of(s + b0, b1 - b0)) == NULL)
            goto error;
        result = Py_BuildValue("(NNOOnnNN)", a, b, Py_None, Py_None, body_at, n, values, layout);
    } else {
        if ((b = str_of(s + b0, b1 - b0)) == NULL)
            goto error;
        result = Py_BuildValue("(OOlNnnNN)", Py_None, Py_None, status, b, body_at, n, values, layout);
    }
    PyBuffer_Release(&view);
    return result;

defer:
    PyBuffer_Release(&view);
    Py_RETURN_NONE;
error:
    Py_XDECREF(a);
    Py_XDECREF(b);
    Py_XDECREF(values);
    Py_XDECREF(layout);
    PyBuffer_Release(&view);
    return NULL;
}

/* ------------------------------------------------------------- parameters */

/* The first parameter called `want` (compared case-insensitively, as
 * simple_params lower-cases names) in ";a=1;b;c=2": a new str, "" for a
 * flag, or None. `text` holds only well-formed simple parameters. */
static PyObject *param_of(const char *s, Py_ssize_t i, Py_ssize_t n, const char *want) {
    Py_ssize_t wl = (Py_ssize_t)strlen(want);
    while (i < n) {
        /* s[i] == ';' */
        Py_ssize_t k0 = i + 1, k1 = k0;
        while (k1 < n && s[k1] != '=' && s[k1] != ';')
            k1++;
        Py_ssize_t v0 = k1, v1 = k1;
        if (k1 < n && s[k1] == '=') {
            v0 = k1 + 1;
            v1 = v0;
            if (v1 < n && s[v1] == '"') {
                v1++;
                while (v1 < n && s[v1] != '"')
                    v1++;
                v1++;
            } else {
                while (v1 < n && s[v1] != ';')
                    v1++;
            }
        }
        if (k1 - k0 == wl && PyOS_strnicmp(s + k0, want, (size_t)wl) == 0) {
            if (v0 == k1)
                return PyUnicode_FromStringAndSize("", 0);
            return PyUnicode_FromStringAndSize(s + v0, v1 - v0);
        }
        i = v1;
    }
    Py_RETURN_NONE;
}

/* ";name[=value]" runs; returns the end, or -1 if the text breaks the shape.
 * `quoted` allows "..." values (header params); otherwise values are of vflag. */
static Py_ssize_t params_run(const char *s, Py_ssize_t i, Py_ssize_t n, int nflag, int vflag, int quoted) {
    while (i < n && s[i] == ';') {
        Py_ssize_t k = run(s, i + 1, n, nflag);
        if (k == i + 1)
            return -1;
        i = k;
        if (i < n && s[i] == '=') {
            i++;
            if (quoted && i < n && s[i] == '"') {
                i++;
                while (i < n && s[i] != '"' && s[i] != '\\' && s[i] != ';')
                    i++;
                if (i >= n || s[i] != '"')
                    return -1;
                i++;
            } else {
                i = run(s, i, n, vflag);
            }
        }
    }
    return i;
}

static int is_py_space(unsigned char c) {
    return c == ' ' || (c >= '\t' && c <= '\r') || (c >= 0x1c && c <= 0x1f);
}

/* ASCII text without leading/trailing whitespace, or NULL (Python path). */
static const char *plain_ascii(PyObject *text, Py_ssize_t *n) {
    if (!PyUnicode_Check(text) || PyUnicode_READY(text) < 0 || !PyUnicode_IS_ASCII(text))
        return NULL;
    const char *s = (const char *)PyUnicode_1BYTE_DATA(text);
    *n = PyUnicode_GET_LENGTH(text);
    if (*n == 0 || is_py_space((unsigned char)s[0]) || is_py_space((unsigned char)s[*n - 1]))
        return NULL;
    return s;
}

/* host [":" port]; returns the end or -1; *port = -1 when absent. */
static Py_ssize_t hostport(const char *s, Py_ssize_t i, Py_ssize_t n, Py_ssize_t *h1, long *port) {
    if (i < n && s[i] == '[') {
        Py_ssize_t k = run(s, i + 1, n, CH_V6);
        if (k == i + 1 || k >= n || s[k] != ']')
            return -1;
        i = k + 1;
    } else {
        Py_ssize_t k = run(s, i, n, CH_HOST);
        if (k == i)
            return -1;
        i = k;
    }
    *h1 = i;
    *port = -1;
    if (i < n && s[i] == ':') {
        Py_ssize_t k = i + 1;
        long p = 0;
        while (k < n && s[k] >= '0' && s[k] <= '9' && k - i <= 5) {
            p = p * 10 + (s[k] - '0');
            k++;
        }
        if (k == i + 1 || k - i > 6 || p > 65535)
            return -1;
        *port = p;
        i = k;
    }
    return i;
}

/* --------------------------------------------------------------- name_addr */

static PyObject *name_addr(PyObject *self, PyObject *text) {
    Py_ssize_t n;
    const char *s = plain_ascii(text, &n);
    if (s == NULL)
        Py_RETURN_NONE;
    Py_ssize_t i = 0, d0 = -1, d1 = -1;
    int quoted = 0, angle = 0;
    PyObject *display = NULL;

    if (s[0] == '"') {
        Py_ssize_t k = 1;
        while (k < n && s[k] != '"' && s[k] != '\\')
            k++;
        if (k >= n || s[k] != '"')
            Py_RETURN_NONE;
        d0 = 1;
        d1 = k;
        quoted = 1;
        i = k + 1;
        while (i < n && (s[i] == ' ' || s[i] == '\t'))
            i++;
        if (i >= n || s[i] != '<')
            Py_RETURN_NONE;
    } else if (s[0] != '<' && IS(s[0], CH_TOKEN)) {
        /* token display name, or the scheme of an addr-spec */
        Py_ssize_t k = 0;
        while (k < n && (IS(s[k], CH_TOKEN) || s[k] == ' ' || s[k] == '\t'))
            k++;
        if (k < n && s[k] == '<') {
            d0 = 0;
            d1 = k;
            while (d1 > d0 && (s[d1 - 1] == ' ' || s[d1 - 1] == '\t'))
                d1--;
            i = k;
        }
    }
    if (i < n && s[i] == '<') {
        angle = 1;
        i++;
    }
    Py_ssize_t u0 = i;
    /* scheme */
    Py_ssize_t scheme_len;
    if (n - i >= 5 && memcmp(s + i, "sips:", 5) == 0)
        scheme_len = 4;
    else if (n - i >= 4 && memcmp(s + i, "sip:", 4) == 0)
        scheme_len = 3;
    else
        Py_RETURN_NONE;
    i += scheme_len + 1;
    /* user@ */
    Py_ssize_t us = i, ue = run(s, i, n, CH_USER);
    Py_ssize_t user0 = -1, user1 = -1;
    if (ue < n && s[ue] == '@' && ue > us) {
        if (!angle) {
            for (Py_ssize_t k = us; k < ue; k++)
                if (s[k] == ',')
                    Py_RETURN_NONE; /* an addr-spec user has no ',' */
        }
        user0 = us;
        user1 = ue;
        i = ue + 1;
    }
    Py_ssize_t h0 = i, h1;
    long port;
    i = hostport(s, i, n, &h1, &port);
    if (i < 0)
        Py_RETURN_NONE;
    Py_ssize_t up0 = i, up1 = i, u1, hp0;
    if (angle) {
        up1 = params_run(s, i, n, CH_UPNAME, CH_UPVAL, 0);
        if (up1 < 0 || up1 >= n || s[up1] != '>')
            Py_RETURN_NONE;
        u1 = up1;
        hp0 = up1 + 1;
    } else {
        u1 = i;
        hp0 = i;
    }
    Py_ssize_t hp1 = params_run(s, hp0, n, CH_TOKEN, CH_HVAL, 1);
    if (hp1 != n)
        Py_RETURN_NONE;
    if (!angle && d0 >= 0)
        Py_RETURN_NONE;

    /* display name: quoted content, or tokens joined by single spaces */
    if (d0 < 0) {
        display = Py_None;
        Py_INCREF(display);
    } else if (quoted) {
        display = PyUnicode_FromStringAndSize(s + d0, d1 - d0);
    } else {
        char buf[256];
        char *out = (d1 - d0) < (Py_ssize_t)sizeof(buf) ? buf : PyMem_Malloc((size_t)(d1 - d0) + 1);
        if (out == NULL)
            return PyErr_NoMemory();
        Py_ssize_t o = 0;
        for (Py_ssize_t k = d0; k < d1; k++) {
            if (s[k] == ' ' || s[k] == '\t') {
                if (o > 0 && out[o - 1] != ' ')
                    out[o++] = ' ';
            } else {
                out[o++] = s[k];
            }
        }
        display = PyUnicode_FromStringAndSize(out, o);
        if (out != buf)
            PyMem_Free(out);
    }
    if (display == NULL)
        return NULL;
    PyObject *tag = param_of(s, hp0, n, "tag");
    if (tag == NULL) {
        Py_DECREF(display);
        return NULL;
    }
    PyObject *user = user0 < 0 ? (Py_INCREF(Py_None), Py_None) : PyUnicode_FromStringAndSize(s + user0, user1 - user0);
    if (user == NULL) {
        Py_DECREF(display);
        Py_DECREF(tag);
        return NULL;
    }
    /* (display, scheme, user, host, port, uri_params, header_params, uri_raw, tag) */
    return Py_BuildValue(
        "(Ns#Ns#Ns#s#s#N)", display, s + u0, scheme_len, user, s + h0, h1 - h0,
        port < 0 ? (Py_INCREF(Py_None), Py_None) : PyLong_FromLong(port),
        s + up0, up1 - up0, s + hp0, hp1 - hp0, s + u0, u1 - u0, tag);
}

/* --------------------------------------------------------------------- via */

static PyObject *via(PyObject *self, PyObject *text) {
    Py_ssize_t n;
    const char *s = plain_ascii(text, &n);
    if (s == NULL || n < 10 || memcmp(s, "SIP/2.0/", 8) != 0)
        Py_RETURN_NONE;
    Py_ssize_t t0 = 8, t1 = t0;
    while (t1 < n && s[t1] >= 'A' && s[t1] <= 'Z')
        t1++;
    if (t1 == t0 || t1 >= n || s[t1] != ' ')
        Py_RETURN_NONE;
    Py_ssize_t h0 = t1 + 1, h1;
    long port;
    Py_ssize_t i = hostport(s, h0, n, &h1, &port);
    if (i < 0)
        Py_RETURN_NONE;
    Py_ssize_t p1 = params_run(s, i, n, CH_TOKEN, CH_HVAL, 0);
    if (p1 != n)
        Py_RETURN_NONE;
    PyObject *branch = param_of(s, i, n, "branch");
    PyObject *rport = branch ? param_of(s, i, n, "rport") : NULL;
    PyObject *received = rport ? param_of(s, i, n, "received") : NULL;
    if (received == NULL) {
        Py_XDECREF(branch);
        Py_XDECREF(rport);
        return NULL;
    }
    /* (transport, host, port, params, branch, rport, received) */
    return Py_BuildValue(
        "(s#s#Ns#NNN)", s + t0, t1 - t0, s + h0, h1 - h0,
        port < 0 ? (Py_INCREF(Py_None), Py_None) : PyLong_FromLong(port), s + i, n - i, branch, rport,
        received);
}

/* ------------------------------------------------------------------- split */

static PyObject *compact_map; /* message.py's COMPACT dict, set by configure() */

static PyObject *configure(PyObject *self, PyObject *compact) {
    if (!PyDict_Check(compact)) {
        PyErr_SetString(PyExc_TypeError, "configure() takes the COMPACT dict");
        return NULL;
    }
    Py_INCREF(compact);
    Py_XSETREF(compact_map, compact);
    Py_RETURN_NONE;
}

/* The header key of a token name: lower-cased, compact forms expanded. */
static PyObject *key_of(const char *name, Py_ssize_t n) {
    char low[64];
    char *buf = n < (Py_ssize_t)sizeof(low) ? low : PyMem_Malloc((size_t)n);
    if (buf == NULL)
        return PyErr_NoMemory();
    for (Py_ssize_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)name[i];
        buf[i] = (c >= 'A' && c <= 'Z') ? (char)(c | 0x20) : (char)c;
    }
    PyObject *key = PyUnicode_FromStringAndSize(buf, n);
    if (buf != low)
        PyMem_Free(buf);
    if (key != NULL && n == 1 && compact_map != NULL) {
        PyObject *full = PyDict_GetItemWithError(compact_map, key);
        if (full != NULL) {
            Py_INCREF(full);
            Py_SETREF(key, full);
        } else if (PyErr_Occurred()) {
            Py_CLEAR(key);
        }
    }
    return key;
}

static PyObject *split(PyObject *self, PyObject *arg) {
    Py_buffer view;
    if (PyObject_GetBuffer(arg, &view, PyBUF_SIMPLE) < 0)
        return NULL;
    const char *s = view.buf;
    Py_ssize_t n = view.len;
    PyObject *fields = NULL, *start = NULL, *index = NULL;
    Py_ssize_t clen_at = -1, clen_end = -1;

    Py_ssize_t head_end, body_at, line_end;
    if (!frame_head(s, n, &head_end, &body_at, &line_end))
        goto defer;
    if ((fields = PyList_New(0)) == NULL || (index = PyDict_New()) == NULL)
        goto error;
    Py_ssize_t pos = line_end + 2;
    while (pos < head_end) {
        const char *nl = memchr(s + pos, '\r', (size_t)(head_end - pos));
        Py_ssize_t le = nl ? nl - s : head_end;
        if (nl && nl[1] != '\n')
            goto defer;
        Py_ssize_t ne = run(s, pos, le, CH_TOKEN);
        if (ne == pos || ne >= le || s[ne] != ':')
            goto defer; /* folding, odd spacing or a broken line: Python decides */
        Py_ssize_t v0 = ne + 1, v1 = le;
        while (v0 < v1 && (s[v0] == ' ' || s[v0] == '\t'))
            v0++;
        while (v1 > v0 && (s[v1 - 1] == ' ' || s[v1 - 1] == '\t'))
            v1--;
        PyObject *key = key_of(s + pos, ne - pos);
        if (key == NULL)
            goto error;
        if (PyUnicode_CompareWithASCIIString(key, "content-length") == 0) {
            if (clen_at >= 0) {
                Py_DECREF(key);
                goto defer; /* two Content-Lengths: Python raises */
            }
            clen_at = v0;
            clen_end = v1;
        }
        PyObject *field = Py_BuildValue(
            "(NNNN)", str_of(s + pos, ne - pos), key, str_of(s + v0, v1 - v0), str_of(s + pos, le - pos));
        if (field == NULL || PyList_Append(fields, field) < 0) {
            Py_XDECREF(field);
            goto error;
        }
        /* index: key -> [values], the same objects as in the field */
        key = PyTuple_GET_ITEM(field, 1);
        PyObject *value = PyTuple_GET_ITEM(field, 2);
        PyObject *values = PyDict_GetItemWithError(index, key);
        int failed;
        if (values != NULL) {
            failed = PyList_Append(values, value) < 0;
        } else if (PyErr_Occurred()) {
            failed = 1;
        } else {
            values = PyList_New(1);
            failed = values == NULL;
            if (!failed) {
                Py_INCREF(value);
                PyList_SET_ITEM(values, 0, value);
                failed = PyDict_SetItem(index, key, values) < 0;
                Py_DECREF(values);
            }
        }
        Py_DECREF(field);
        if (failed)
            goto error;
        pos = le + 2;
    }
    if (clen_at < 0 || clen_end - clen_at < 1 || clen_end - clen_at > 10)
        goto defer;
    long long clen = 0;
    for (Py_ssize_t i = clen_at; i < clen_end; i++) {
        if (s[i] < '0' || s[i] > '9')
            goto defer;
        clen = clen * 10 + (s[i] - '0');
    }
    if (clen != n - body_at)
        goto defer;
    if ((start = str_of(s, line_end)) == NULL)
        goto error;
    PyBuffer_Release(&view);
    return Py_BuildValue("(NNNnn)", start, fields, index, body_at, n);

defer:
    Py_XDECREF(fields);
    Py_XDECREF(index);
    PyBuffer_Release(&view);
    Py_RETURN_NONE;
error:
    Py_XDECREF(fields);
    Py_XDECREF(index);
    PyBuffer_Release(&view);
    return NULL;
}

/* ------------------------------------------------------------------ module */

static PyMethodDef methods[] = {
    {"scan", scan, METH_O, "Frame a datagram and index its slotted headers, or None."},
    {"name_addr", name_addr, METH_O, "The parts of a simple name-addr/addr-spec, or None."},
    {"via", via, METH_O, "The parts of a simple Via value, or None."},
    {"split", split, METH_O, "Start line, header fields, their index and body bounds of a plain datagram, or None."},
    {"configure", configure, METH_O, "Give the compact-form table (names.COMPACT)."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, .m_name = "_speedups", .m_size = -1, .m_methods = methods,
};

PyMODINIT_FUNC PyInit__speedups(void) {
    init_tables();
    return PyModule_Create(&module);
}
