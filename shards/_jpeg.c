/* shards._jpeg: decode a JPEG straight into a caller's buffer (libjpeg-turbo), GIL released.
 *
 * A training worker decodes each image into its row of a shared batch buffer. Decoders that
 * return a new array (torchvision, Pillow) make a second pass necessary: copying a just-decoded
 * image into the batch cost ~20% of the decode itself here. This module is optional: when it is
 * not built (no compiler or libjpeg headers at install time), `shards.codec` decodes with
 * torchvision and copies.
 *
 * decode_into(data, out, height, width) -> bool
 *   data: the JPEG bytes; out: a writable C-contiguous buffer of height * width * 3 bytes, filled
 *   with interleaved RGB rows. Returns True when the image was decoded cleanly into `out`; False
 *   when it could not be (not a JPEG, another size, a corrupt or truncated stream, a colour space
 *   libjpeg cannot turn into RGB): the caller then decodes it another way, which says what is
 *   wrong. Decoding uses libjpeg's defaults (islow DCT, fancy upsampling), as torchvision does.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <setjmp.h>
#include <stdio.h>

#include <jpeglib.h>

struct error_manager {
    struct jpeg_error_mgr pub;
    jmp_buf escape;
};

static void on_error(j_common_ptr cinfo) {
    longjmp(((struct error_manager *)cinfo->err)->escape, 1);
}

static void on_message(j_common_ptr cinfo, int level) {
    if (level < 0) { /* a warning: corrupt data that libjpeg would paper over */
        cinfo->err->num_warnings++;
    }
}

/* 1: decoded; 0: could not be (see above). */
static int decode_rgb(const unsigned char *data, size_t size, unsigned char *out, int height, int width) {
    struct jpeg_decompress_struct cinfo;
    struct error_manager errors;
    volatile int created = 0;

    cinfo.err = jpeg_std_error(&errors.pub);
    errors.pub.error_exit = on_error;
    errors.pub.emit_message = on_message;
    if (setjmp(errors.escape)) {
        if (created) {
            jpeg_destroy_decompress(&cinfo);
        }
        return 0;
    }
    jpeg_create_decompress(&cinfo);
    created = 1;
    jpeg_mem_src(&cinfo, data, (unsigned long)size);
    if (jpeg_read_header(&cinfo, TRUE) != JPEG_HEADER_OK || (int)cinfo.image_height != height ||
        (int)cinfo.image_width != width) {
        jpeg_destroy_decompress(&cinfo);
        return 0;
    }
    cinfo.out_color_space = JCS_RGB;
    jpeg_start_decompress(&cinfo);
    if ((int)cinfo.output_height != height || (int)cinfo.output_width != width ||
        cinfo.output_components != 3) {
        jpeg_destroy_decompress(&cinfo);
        return 0;
    }
    const size_t stride = (size_t)width * 3;
    while (cinfo.output_scanline < cinfo.output_height) {
        JSAMPROW row = out + (size_t)cinfo.output_scanline * stride;
        jpeg_read_scanlines(&cinfo, &row, 1);
    }
    jpeg_finish_decompress(&cinfo);
    int clean = errors.pub.num_warnings == 0;
    jpeg_destroy_decompress(&cinfo);
    return clean;
}

static PyObject *decode_into(PyObject *Py_UNUSED(self), PyObject *args) {
    Py_buffer data, out;
    int height, width;
    if (!PyArg_ParseTuple(args, "y*w*ii", &data, &out, &height, &width)) {
        return NULL;
    }
    int ok = 0;
    if (height <= 0 || width <= 0 || out.len != (Py_ssize_t)height * width * 3 ||
        !PyBuffer_IsContiguous(&out, 'C')) {
        PyBuffer_Release(&data);
        PyBuffer_Release(&out);
        PyErr_Format(PyExc_ValueError, "out must be a C-contiguous buffer of %d x %d x 3 bytes (got %zd bytes)",
                     height, width, out.len);
        return NULL;
    }
    Py_BEGIN_ALLOW_THREADS
    ok = decode_rgb((const unsigned char *)data.buf, (size_t)data.len, (unsigned char *)out.buf, height, width);
    Py_END_ALLOW_THREADS
    PyBuffer_Release(&data);
    PyBuffer_Release(&out);
    return PyBool_FromLong(ok);
}

static PyMethodDef methods[] = {
    {"decode_into", decode_into, METH_VARARGS,
     "decode_into(data, out, height, width) -> bool: decode JPEG `data` as RGB into the writable buffer `out` "
     "(height * width * 3 bytes); False if it could not be decoded cleanly at that size."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, .m_name = "_jpeg", .m_size = -1, .m_methods = methods};

PyMODINIT_FUNC PyInit__jpeg(void) {
    PyObject *m = PyModule_Create(&module);
    if (m != NULL) {
        PyModule_AddIntConstant(m, "JPEG_LIB_VERSION", JPEG_LIB_VERSION);
    }
    return m;
}
