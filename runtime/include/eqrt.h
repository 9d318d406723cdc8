/*
 * eqrt.h - C interface of eq-runtime, an inference runtime for ncnn models
 * (.param / .param.bin + .bin) in FP32, INT8 and INT7.
 *
 * Link with the static library and the system libraries the Rust standard
 * library needs:
 *
 *     cc app.c -I runtime/include target/release/libeq_runtime.a -lpthread -ldl -lm
 *
 * or with the shared library: -L target/release -leq_runtime.
 *
 * Conventions
 * - Every function returning eq_status returns EQ_OK (0) on success and a
 *   non-zero code on failure. On failure, out-parameters documented as
 *   "set to NULL on failure" are NULL and others are left unchanged unless
 *   documented otherwise.
 * - eq_last_error() returns a message about the last failed call on the
 *   calling thread ("" after a successful call).
 * - No function aborts or unwinds into the caller: NULL pointers, wrong sizes,
 *   unknown blob names, strings that are not UTF-8, freed handles and internal
 *   panics all come back as status codes.
 * - Strings are NUL-terminated. Blob names and cluster names must be UTF-8;
 *   file paths are passed to the OS as bytes.
 * - Pointers you pass must be valid for the sizes you give (the library can
 *   detect NULL and misalignment, not dangling or too-short buffers).
 *
 * Handles
 * eq_net* and eq_options* are opaque handles. Their values are ids the library
 * looks up in a table of live objects on every call; an id is never reused.
 * So a handle used after its eq_*_free, freed twice, of the wrong kind (an
 * eq_options* cast to eq_net*) or made up is reported as EQ_ERR_INVALID_HANDLE
 * rather than touching freed memory. (Limits: ids come from a pointer-sized
 * counter that is never wound back, so after about 2^28 handles on a 32-bit
 * system new handles fail with EQ_ERR_INVALID_ARGUMENT; a pointer into freed
 * memory of your own, or any other invalid pointer argument, is not detected.)
 *
 * Threads
 * All functions may be called from any thread. Calls on one eq_net are
 * serialised by a lock inside the net: two threads running the same net take
 * turns, and a thread's outputs may be replaced by another thread's run before
 * it reads them, so give each thread its own net for concurrent inference. A
 * net freed while another thread is inside a call on it is released when that
 * call returns. A net's worker threads (eq_options_set_threads) are created at
 * load and live until eq_net_free; the calling thread is worker 0 and is never
 * pinned by the library.
 */
#ifndef EQRT_H
#define EQRT_H

#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

/* ------------------------------------------------------------------ status */

/* Status codes returned by every fallible function. */
typedef int eq_status;

enum eq_status_code {
    EQ_OK = 0,
    /* An argument is out of range: negative count, unknown precision, bad
       cluster name, index past the end, blob of the wrong kind, outputs read
       before eq_net_run, ... */
    EQ_ERR_INVALID_ARGUMENT = 1,
    /* A required pointer is NULL. */
    EQ_ERR_NULL_POINTER = 2,
    /* A file could not be opened, read or mapped. */
    EQ_ERR_IO = 3,
    /* The .param text or .param.bin is malformed. */
    EQ_ERR_PARSE = 4,
    /* The .bin weights are malformed or do not match the param file. */
    EQ_ERR_WEIGHTS = 5,
    /* A shape or element count is wrong (eq_net_set_input with the wrong
       number of values, an invalid eq_options_set_input_shape). */
    EQ_ERR_SHAPE = 6,
    /* No blob of that name in the model. */
    EQ_ERR_UNKNOWN_BLOB = 7,
    /* A panic inside the library was caught. A net that was in use when it
       happened is refused by later calls (with this code): free it. */
    EQ_ERR_PANIC = 8,
    /* The output buffer is too small; *count holds the required size. */
    EQ_ERR_BUFFER_TOO_SMALL = 9,
    /* A name is not valid UTF-8. */
    EQ_ERR_UTF8 = 10,
    /* The handle was freed, is of the wrong kind, or never existed. */
    EQ_ERR_INVALID_HANDLE = 11,
    /* The model is not runnable: graph errors (missing blobs, cycles, unknown
       layer types), invalid layer parameters, impossible input shapes. */
    EQ_ERR_MODEL = 12,
    /* A layer failed while running. */
    EQ_ERR_RUN = 13
};

/* The library version, e.g. "0.1.0". Static storage. */
const char *eq_version(void);

/* The name of a status code, e.g. "EQ_ERR_SHAPE"; "EQ_ERR_UNKNOWN_STATUS" for
   values not listed above. Static storage. */
const char *eq_status_string(eq_status status);

/* A message describing the last failure on this thread, naming the file,
   layer or blob concerned; "" if the last call succeeded. Never NULL. The
   string is valid until the next eq_* call on this thread that returns an
   eq_status; copy it to keep it. */
const char *eq_last_error(void);

/* ----------------------------------------------------------------- options */

/* Load options. Create, set, pass to eq_net_load*, free. A net copies the
   options at load, so one eq_options may be reused or freed afterwards. */
typedef struct eq_options eq_options;

/* Arithmetic of the quantizable layers (Convolution, ConvolutionDepthWise,
   InnerProduct). */
enum eq_precision {
    /* As the model says: INT8 where it has int8 scales (INT7 where a layer is
       marked 7-bit), FP32 elsewhere. The default. */
    EQ_PRECISION_AUTO = 0,
    /* Everything in FP32 (int8 weights are dequantized at load). */
    EQ_PRECISION_FP32 = 1,
    /* INT8 kernels on every layer with scales. */
    EQ_PRECISION_INT8 = 2,
    /* INT7 kernels on every layer with scales; weights outside +-63 make the
       load fail. */
    EQ_PRECISION_INT7 = 3
};

/* Creates options with the defaults: 1 thread, no pinning, EQ_PRECISION_AUTO,
   input shapes as the model declares them. *out is set to NULL on failure. */
eq_status eq_options_new(eq_options **out);

/* Frees options. NULL is a no-op (EQ_OK); a second free of the same handle
   returns EQ_ERR_INVALID_HANDLE. */
eq_status eq_options_free(eq_options *opts);

/* Worker threads including the caller's. 0 (the default) means one per CPU
   set by eq_options_set_cpus / eq_options_set_cluster, or 1 if none is set.
   Negative or more than 256: EQ_ERR_INVALID_ARGUMENT. */
eq_status eq_options_set_threads(eq_options *opts, int threads);

/* Most bytes a net's blob memory (arena plus every worker's scratch) may take;
   loading a model that needs more fails with EQ_ERR_MODEL and a message giving
   the sizes, instead of an allocation the machine cannot back. 0 (the
   default): no limit. */
eq_status eq_options_set_memory_limit(eq_options *opts, size_t bytes);

/* Nonzero: FP32 InnerProduct layers keep fp16 copies of their weights and read
   those (as ncnn's default fp16 storage): about half the time of a layer that
   streams large weights (VGG16's fc6), each weight rounded to fp16. 0 (the
   default): FP32 stays exact. */
eq_status eq_options_set_fp16_weights(eq_options *opts, int on);

/* CPUs to pin the net's extra worker threads to (worker i runs on
   cpus[i % count]). Ids must exist on this machine and be distinct.
   count == 0 (cpus may then be NULL) removes pinning. */
eq_status eq_options_set_cpus(eq_options *opts, const int *cpus, size_t count);

/* Like eq_options_set_cpus, by cluster: "big", "little", "all" or
   "cpus=0,1" / "cpus=4-5". Clusters are detected from /proc and /sys (part
   number and maximum frequency); on a machine with one kind of core, "big"
   and "little" both mean all CPUs. Unknown names: EQ_ERR_INVALID_ARGUMENT. */
eq_status eq_options_set_cluster(eq_options *opts, const char *cluster);

/* One of enum eq_precision; other values: EQ_ERR_INVALID_ARGUMENT. */
eq_status eq_options_set_precision(eq_options *opts, int precision);

/* The shape of input blob `name`, in ncnn's order: dims (1 to 4), then width,
   height, depth, channels. Dimensions a shape of `dims` does not have must
   be 1 (e.g. an image: dims 3, w, h, d = 1, c). Needed for models whose Input
   layer declares no shape; overrides a declared shape otherwise. Setting the
   same name again replaces the shape. An invalid shape is EQ_ERR_SHAPE; a
   name that is not an input of the model fails at load
   (EQ_ERR_UNKNOWN_BLOB). */
eq_status eq_options_set_input_shape(eq_options *opts, const char *name, int dims,
                                     int w, int h, int d, int c);

/* --------------------------------------------------------------------- net */

/* A loaded model with its memory for one inference at a time. */
typedef struct eq_net eq_net;

/* A blob shape: dims (1 to 4) and ncnn's w, h, d, c; dimensions beyond dims
   are 1. Element (c, d, h, w) of a blob is at index ((c*D + d)*H + h)*W + w. */
typedef struct eq_shape {
    int dims;
    int w;
    int h;
    int d;
    int c;
} eq_shape;

/* Loads a model from files: `param_path` (.param text or .param.bin) and
   `bin_path` (weights, memory-mapped: keep the file unchanged while the net
   lives). `opts` may be NULL for the defaults. *out is set to NULL on
   failure. Errors: EQ_ERR_IO, EQ_ERR_PARSE, EQ_ERR_WEIGHTS, EQ_ERR_MODEL,
   EQ_ERR_UNKNOWN_BLOB (an input shape for a blob that is not an input). */
eq_status eq_net_load(const char *param_path, const char *bin_path,
                      const eq_options *opts, eq_net **out);

/* Loads a model from memory: `param` (text or binary, param_len bytes, not
   necessarily NUL-terminated) and `bin` (bin_len bytes; NULL if bin_len is 0,
   for models without weights). Both are copied: the buffers may be freed
   when this returns. Otherwise as eq_net_load. */
eq_status eq_net_load_memory(const void *param, size_t param_len, const void *bin,
                             size_t bin_len, const eq_options *opts, eq_net **out);

/* Frees a net and its worker threads. NULL is a no-op (EQ_OK); a second free
   returns EQ_ERR_INVALID_HANDLE. Name strings from eq_net_input_name /
   eq_net_output_name become invalid. */
eq_status eq_net_free(eq_net *net);

/* The number of input blobs (outputs of Input layers). */
eq_status eq_net_input_count(const eq_net *net, size_t *count);

/* The name of input `index` (0 <= index < count). *name points into the net
   and is valid until eq_net_free; it is set to NULL on failure. */
eq_status eq_net_input_name(const eq_net *net, size_t index, const char **name);

/* The number of output blobs (blobs no layer consumes). */
eq_status eq_net_output_count(const eq_net *net, size_t *count);

/* The name of output `index`, as eq_net_input_name. */
eq_status eq_net_output_name(const eq_net *net, size_t index, const char **name);

/* The planned shape of any blob of the model. */
eq_status eq_net_blob_shape(const eq_net *net, const char *name, eq_shape *shape);

/* Copies `count` floats into input blob `name`. count must equal the blob's
   element count (EQ_ERR_SHAPE otherwise). Unknown name: EQ_ERR_UNKNOWN_BLOB;
   a blob that is not an input: EQ_ERR_INVALID_ARGUMENT. Outputs of an
   earlier run become unavailable until the next eq_net_run. */
eq_status eq_net_set_input(eq_net *net, const char *name, const float *data,
                           size_t count);

/* Runs the whole model once. Inputs keep the values last set across runs
   (zeros if never set). Performs no heap allocation. */
eq_status eq_net_run(eq_net *net);

/* Copies output blob `name` of the last run into `buffer`, which holds
   `capacity` floats. `count` (may be NULL) receives the element count and
   `shape` (may be NULL) the shape; both are written even when the buffer is
   too small (EQ_ERR_BUFFER_TOO_SMALL, nothing copied). With buffer == NULL
   and capacity == 0 only count and shape are reported (works before any run).
   Errors: EQ_ERR_UNKNOWN_BLOB; EQ_ERR_INVALID_ARGUMENT for a blob that is not
   an output, or when there was no successful eq_net_run since the last
   eq_net_set_input. */
eq_status eq_net_get_output(const eq_net *net, const char *name, float *buffer,
                            size_t capacity, size_t *count, eq_shape *shape);

/* ------------------------------------------------------------ custom layers */

/* A layer type implemented by the application, for models with private
   layers (e.g. YoloV5's "Focus"). Register it on the options with
   eq_options_register_layer before loading; every layer of that type in the
   model then runs these callbacks. A registered type takes precedence over a
   built-in type of the same name.

   Every callback returns 0 on success. On failure it returns non-zero and may
   write a NUL-terminated message of at most EQ_CUSTOM_ERROR_LEN bytes
   (terminator included) into `error`; the load (create, output_shapes) or
   the run (forward) then fails with that message, naming the layer
   (EQ_ERR_MODEL at load, EQ_ERR_RUN in eq_net_run). Callbacks must not
   unwind (no C++ exceptions, no longjmp) through the library, may be called
   from any thread (one call at a time per net), and are called while the
   library holds its own locks: they may call the eq_layer_params_* and
   eq_weights_read functions below, but no other eq_* function. user_data and
   the callbacks must stay valid as long as any options or net using them.

   create (may be NULL: the layer's state is then user_data): called once per
     layer at load with the layer's params and its weights (read them with
     eq_weights_read, in the order they are stored); sets *state, which the
     other callbacks receive.
   output_shapes (required): shape inference, at load. On entry
     *output_count is the capacity of `outputs` (64); set it to the number of
     outputs and fill their shapes (dims 1..4, unused dimensions ignored).
   forward (required): computes the outputs, each a dense float array of its
     shape (ncnn order: element (c, d, h, w) at ((c*d_len + d)*h_len + h)*w_len
     + w), from the inputs. Must not modify the inputs. Runs on the thread
     that called eq_net_run.
   destroy (may be NULL): frees a state made by create, once, when the net
     (or a failed load) drops the layer. */
#define EQ_CUSTOM_ERROR_LEN 256

typedef struct eq_layer_params eq_layer_params;
typedef struct eq_weights eq_weights;

typedef struct eq_custom_layer {
    void *user_data;
    int (*create)(void *user_data, const eq_layer_params *params,
                  eq_weights *weights, void **state, char *error);
    int (*output_shapes)(void *state, const eq_shape *inputs,
                         size_t input_count, eq_shape *outputs,
                         size_t *output_count, char *error);
    int (*forward)(void *state, const float *const *inputs,
                   const eq_shape *input_shapes, size_t input_count,
                   float *const *outputs, const eq_shape *output_shapes,
                   size_t output_count, char *error);
    void (*destroy)(void *state);
} eq_custom_layer;

/* Registers (or replaces) layer type `type_name` on the options; the struct
   is copied. output_shapes and forward are required (EQ_ERR_INVALID_ARGUMENT
   otherwise). */
eq_status eq_options_register_layer(eq_options *opts, const char *type_name,
                                     const eq_custom_layer *layer);

/* Parameter `key` (0..31) of the layer being created, as an int / a float;
   `default_value` when the layer's param line does not set it. A key holding
   an array or a string: EQ_ERR_INVALID_ARGUMENT. Only inside create. */
eq_status eq_layer_params_int(const eq_layer_params *params, int key,
                              int default_value, int *value);
eq_status eq_layer_params_float(const eq_layer_params *params, int key,
                                float default_value, float *value);

/* Reads the layer's next `count` raw float32 weights from the .bin into
   `out`. Past the end of the file: EQ_ERR_WEIGHTS. Only inside create. */
eq_status eq_weights_read(eq_weights *weights, size_t count, float *out);

#ifdef __cplusplus
}
#endif

#endif /* EQRT_H */
