/* shards._tarindex: the raw samples of a memory-mapped shard, found in one pass over its bytes.
 *
 * Reading a mapped training shard in Python (each header sliced and parsed, each name split into
 * sample key and suffix, members grouped, a dict built per sample) cost ~10 us of CPU per sample:
 * the largest share of a training worker's own Python work at 224 px. This pass costs ~4 us per
 * sample (7 members) on a file whose pages are mapped, mostly in making the Python objects; on a
 * fresh map the first touch of its pages adds ~6 us. The module is optional, like shards._jpeg:
 * when it is not built, `shards.scan.ShardScan` reads every shard through
 * `shards.tar.iter_members`.
 *
 * samples(view, url) -> list[dict] | None
 *   For a tar held in the memoryview `view`: one dict per sample, in file order, as
 *   `ShardScan` makes them (webdataset's grouping): "__key__" (the member name up to the first dot
 *   of its file name), "__url__" (`url`), and each member's lower-cased suffix mapped to a
 *   zero-copy slice of `view` holding its data.
 *   None unless the tar is exactly what our writer makes: regular members (type '0', NUL or '7')
 *   with valid checksums, octal sizes, names of at most 100 bytes (UTF-8 keys, ASCII suffixes, no
 *   USTAR prefix field) that all have a key, no suffix twice in a sample, every member wholly
 *   inside the view, and an end-of-archive block. Anything else (GNU long names, pax records,
 *   directories, a damaged or truncated file) is left to `shards.tar.iter_members`, which
 *   understands the other layouts and says which byte or sample is wrong.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <string.h>

#define BLOCK 512
#define NAME_SIZE 100

/* The value of an octal field (digits, optionally led by spaces, ended by NULs or spaces); -1 for
 * anything else (base-256 sizes, garbage), which the Python reader handles. */
static long long octal_field(const unsigned char *field, int length) {
    int i = 0;
    int digits = 0;
    long long value = 0;
    while (i < length && field[i] == ' ') {
        i++;
    }
    for (; i < length && field[i] >= '0' && field[i] <= '7'; i++, digits++) {
        if (value > (1LL << 50)) {
            return -1;
        }
        value = value * 8 + (field[i] - '0');
    }
    for (; i < length; i++) {
        if (field[i] != '\0' && field[i] != ' ') {
            return -1;
        }
    }
    return digits ? value : -1;
}

/* The header checksum as tar defines it: the unsigned sum of the block, its own field as spaces. */
static int checksum_ok(const unsigned char *header) {
    long sum = 8 * ' ';
    for (int i = 0; i < BLOCK; i++) {
        if (i < 148 || i >= 156) {
            sum += header[i];
        }
    }
    return octal_field(header + 148, 8) == sum;
}

static int is_zero_block(const unsigned char *block) {
    for (int i = 0; i < BLOCK; i++) {
        if (block[i]) {
            return 0;
        }
    }
    return 1;
}

/* Where a member name splits into sample key and suffix, as webdataset's `base_plus_ext` splits
 * it in the common case: at the first dot of the file name, which must not be its first
 * character. -1 for any other name (left to the Python reader). */
static Py_ssize_t key_length(const unsigned char *name, Py_ssize_t length) {
    Py_ssize_t start = 0;
    for (Py_ssize_t i = 0; i < length; i++) {
        if (name[i] == '\n') {
            return -1;
        }
        if (name[i] == '/') {
            start = i + 1;
        }
    }
    const unsigned char *dot = memchr(name + start, '.', length - start);
    if (dot == NULL || dot == name + start) {
        return -1;
    }
    return dot - name;
}

/* The lower-cased ASCII suffix as a str; NULL with no exception set if it is not ASCII. */
static PyObject *lower_suffix(const unsigned char *suffix, Py_ssize_t length) {
    char lowered[NAME_SIZE];
    for (Py_ssize_t i = 0; i < length; i++) {
        unsigned char c = suffix[i];
        if (c >= 0x80) {
            return NULL;
        }
        lowered[i] = (char)(c >= 'A' && c <= 'Z' ? c + ('a' - 'A') : c);
    }
    return PyUnicode_FromStringAndSize(lowered, length);
}

enum outcome { DONE, NOT_PLAIN, FAILED };

/* Appends the samples of the tar in data[0:size] to `samples`. NOT_PLAIN: a layout left to Python
 * (no exception set); FAILED: a Python error (e.g. out of memory) is set. */
static enum outcome read_samples(PyObject *view, const unsigned char *data, Py_ssize_t size, PyObject *url,
                                 PyObject *samples) {
    PyObject *sample = NULL; /* the sample being filled (a new reference, also owned by `samples`) */
    const unsigned char *key = NULL;
    Py_ssize_t key_size = 0;
    Py_ssize_t offset = 0;
    while (offset + BLOCK <= size) {
        const unsigned char *header = data + offset;
        if (is_zero_block(header)) {
            return DONE;
        }
        unsigned char kind = header[156];
        long long length = octal_field(header + 124, 12);
        long long padded = length < 0 ? 0 : (length + BLOCK - 1) / BLOCK * BLOCK;
        int prefixed = header[345] != 0 && memcmp(header + 257, "ustar", 5) == 0;
        if ((kind != '0' && kind != '\0' && kind != '7') || length < 0 || prefixed || !checksum_ok(header) ||
            padded > size - offset - BLOCK) {
            return NOT_PLAIN;
        }
        const unsigned char *name_end = memchr(header, '\0', NAME_SIZE);
        Py_ssize_t name_size = name_end ? name_end - header : NAME_SIZE;
        Py_ssize_t split = key_length(header, name_size);
        if (split < 0) {
            return NOT_PLAIN;
        }
        if (sample == NULL || split != key_size || memcmp(header, key, split) != 0) {
            PyObject *key_text = PyUnicode_DecodeUTF8((const char *)header, split, NULL);
            if (key_text == NULL) {
                PyErr_Clear();
                return NOT_PLAIN;
            }
            sample = PyDict_New();
            int failed = sample == NULL || PyList_Append(samples, sample) < 0 ||
                         PyDict_SetItemString(sample, "__key__", key_text) < 0 ||
                         PyDict_SetItemString(sample, "__url__", url) < 0;
            Py_DECREF(key_text);
            Py_XDECREF(sample); /* `samples` holds it */
            if (failed) {
                return FAILED;
            }
            key = header;
            key_size = split;
        }
        PyObject *suffix = lower_suffix(header + split + 1, name_size - split - 1);
        if (suffix == NULL) {
            return PyErr_Occurred() ? FAILED : NOT_PLAIN;
        }
        int twice = PyDict_Contains(sample, suffix);
        PyObject *member = twice ? NULL : PySequence_GetSlice(view, offset + BLOCK, offset + BLOCK + length);
        int failed = twice < 0 || (!twice && (member == NULL || PyDict_SetItem(sample, suffix, member) < 0));
        Py_DECREF(suffix);
        Py_XDECREF(member);
        if (failed || twice) {
            return failed ? FAILED : NOT_PLAIN;
        }
        offset += BLOCK + padded;
    }
    return NOT_PLAIN; /* no end-of-archive block */
}

static PyObject *tarindex_samples(PyObject *Py_UNUSED(module), PyObject *args) {
    PyObject *view;
    PyObject *url;
    if (!PyArg_ParseTuple(args, "O!U:samples", &PyMemoryView_Type, &view, &url)) {
        return NULL;
    }
    Py_buffer buffer;
    if (PyObject_GetBuffer(view, &buffer, PyBUF_SIMPLE) < 0) {
        return NULL;
    }
    PyObject *samples = PyList_New(0);
    enum outcome outcome = samples == NULL ? FAILED : read_samples(view, buffer.buf, buffer.len, url, samples);
    PyBuffer_Release(&buffer);
    if (outcome == DONE) {
        return samples;
    }
    Py_XDECREF(samples);
    if (outcome == FAILED) {
        return NULL;
    }
    Py_RETURN_NONE;
}

static PyMethodDef methods[] = {
    {"samples", tarindex_samples, METH_VARARGS,
     "samples(view, url) -> the raw samples (dicts of memoryviews) of a plain tar, or None"},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "shards._tarindex", "The raw samples of a memory-mapped shard.", -1, methods,
    NULL, NULL, NULL, NULL,
};

PyMODINIT_FUNC PyInit__tarindex(void) {
    return PyModule_Create(&module);
}
