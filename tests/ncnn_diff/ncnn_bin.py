"""Deterministic random-weight .bin files for ncnn .param files.

The .bin format has no index: it is the concatenation of each layer's weight
blobs in .param order, in the order that layer's loader asks for them
(ncnn-format.md section 4.4). `load_plan` replays that order, `write_bin`
fills it with seeded random values, and `ncnn_consumed_bytes` asks the real
ncnn loader how many bytes it actually read, which is how the plan is checked.

Only numpy is needed to write files; the checks import `ncnn` lazily.
"""

import ctypes
import hashlib
import os
import re
from dataclasses import dataclass

import numpy as np

# Bump when the generated values or layout change, so cached files are rebuilt.
WRITER_VERSION = 2

FP16_TAG = 0x01306B47

# Blobs whose layers ignore a failed read, so cutting them off goes unnoticed.
UNCHECKED_READS = {"w_scale", "in_scale", "out_scale", "pad_data"}

# Layer types that read nothing from the .bin. Anything not here and not in
# `load_plan` is rejected instead of silently producing a misaligned file.
WEIGHTLESS = {
    "AbsVal", "ArgMax", "BinaryOp", "BNLL", "Cast", "Clip", "Concat", "Crop",
    "DetectionOutput", "Dropout", "ELU", "Eltwise", "Erf", "Exp",
    "ExpandDims", "Flatten", "GELU", "GLU", "HardSigmoid", "HardSwish", "Input",
    "Interp", "Log", "LRN", "Mish", "Noop", "Packing", "Permute", "PixelShuffle",
    "Pooling", "Pooling1D", "Pooling3D", "Power", "PriorBox", "Proposal",
    "PSROIPooling", "Reduction", "ReLU", "Reorg", "Reshape", "ROIAlign",
    "ROIPooling", "SELU", "ShuffleChannel", "Sigmoid", "Slice", "Softmax",
    "Softplus", "Split", "Squeeze", "Swish", "TanH", "Threshold", "Tile",
    "UnaryOp", "Yolov3DetectionOutput", "YoloDetectionOutput",
}


# ---------------------------------------------------------------- .param text


@dataclass
class Layer:
    type: str
    name: str
    bottoms: list
    tops: list
    params: dict  # key -> int | float | str | list

    def get(self, key, default):
        return self.params.get(key, default)

    def get_int(self, key, default):
        value = self.params.get(key, default)
        return int(value) if not isinstance(value, (list, str)) else default


def _tokens(text):
    # Whitespace separated, except that a quoted string may hold spaces.
    return re.findall(r'(?:[^\s"]*"[^"]*"[^\s"]*)+|\S+', text)


def _scalar(text):
    if text[:1].isalpha() or text[:1] == '"':
        return text.strip('"')
    if "." in text or "e" in text or "E" in text:
        return float(text)
    return int(text)


def parse_param(text):
    """Parse a text .param into a list of Layer records."""
    toks = _tokens(text)
    if not toks or toks[0] != "7767517":
        raise ValueError("not a text .param (bad magic)")
    layer_count = int(toks[1])
    pos = 3
    layers = []
    for _ in range(layer_count):
        ltype, name = toks[pos], toks[pos + 1]
        n_in, n_out = int(toks[pos + 2]), int(toks[pos + 3])
        pos += 4
        bottoms = toks[pos:pos + n_in]
        pos += n_in
        tops = toks[pos:pos + n_out]
        pos += n_out
        params = {}
        while pos < len(toks) and re.match(r"^-?[0-9]+=", toks[pos]):
            key_text, value = toks[pos].split("=", 1)
            key = int(key_text)
            if key <= -23300:
                # Old-style array: "count,v1,...,vN".
                items = value.split(",")
                params[-key - 23300] = [_scalar(v) for v in items[1:]]
            elif value[:1].isalpha() or value.startswith('"'):
                params[key] = value.strip('"')  # string (expression) parameter
            elif "," in value:  # a trailing comma: a one-element array
                params[key] = [_scalar(v) for v in value.rstrip(",").split(",")]
            else:
                params[key] = _scalar(value)
            pos += 1
        layers.append(Layer(ltype, name, bottoms, tops, params))
    return layers


# ------------------------------------------------------------- load sequence


@dataclass
class Blob:
    tagged: bool  # flag word first (weights); raw fp32 otherwise
    count: int
    role: str  # how `write_bin` chooses values
    groups: int = 1  # weight: output channels (fan-in = count/groups); scales: count
    gain: float = 2.0  # weight: variance gain, std = sqrt(gain / fan_in)


def _int8_scales(layer, weight_groups, depthwise):
    """Scale arrays that follow the bias when int8_scale_term (8=) is set."""
    term = layer.get_int(8, 0)
    blobs = []
    if term:
        if depthwise and term in (2, 102):
            weight_groups = 1
        blobs.append(Blob(False, weight_groups, "w_scale", weight_groups))
        blobs.append(Blob(False, 1, "in_scale"))
    if term > 100 and layer.type != "InnerProduct":
        blobs.append(Blob(False, 1, "out_scale"))
    return blobs


def load_plan(layer):
    """Blobs `layer` reads from the .bin, in ncnn's order."""
    t = layer.type
    if t in ("Convolution", "Convolution1D", "Convolution3D", "ConvolutionDepthWise",
             "ConvolutionDepthWise1D", "ConvolutionDepthWise3D"):
        if layer.get_int(19, 0):  # dynamic weight: comes from input blobs
            return []
        num_output = layer.get_int(0, 0)
        depthwise = "DepthWise" in t
        group = layer.get_int(7, 1) if depthwise else 1
        blobs = [Blob(True, layer.get_int(6, 0), "weight", num_output)]
        if layer.get_int(5, 0):
            blobs.append(Blob(False, num_output, "bias"))
        if t in ("Convolution", "ConvolutionDepthWise"):
            blobs += _int8_scales(layer, group if depthwise else num_output, depthwise)
        return blobs
    if t in ("Deconvolution", "DeconvolutionDepthWise", "Deconvolution1D",
             "Deconvolution3D", "DeconvolutionDepthWise1D", "DeconvolutionDepthWise3D"):
        if layer.get_int(28, 0):
            return []
        num_output = layer.get_int(0, 0)
        blobs = [Blob(True, layer.get_int(6, 0), "weight", num_output)]
        if layer.get_int(5, 0):
            blobs.append(Blob(False, num_output, "bias"))
        return blobs
    if t == "InnerProduct":
        num_output = layer.get_int(0, 0)
        blobs = [Blob(True, layer.get_int(2, 0), "weight", num_output)]
        if layer.get_int(1, 0):
            blobs.append(Blob(False, num_output, "bias"))
        return blobs + _int8_scales(layer, num_output, False)
    if t == "BatchNorm":
        c = layer.get_int(0, 0)
        return [Blob(False, c, r) for r in ("bn_slope", "bn_mean", "bn_var", "bn_bias")]
    if t == "Scale":
        n = layer.get_int(0, 0)
        if n == -233:  # scale comes from a second input blob
            return []
        blobs = [Blob(False, n, "scale")]
        if layer.get_int(1, 0):
            blobs.append(Blob(False, n, "bias"))
        return blobs
    if t == "PReLU":
        return [Blob(False, layer.get_int(0, 0), "prelu")]
    if t == "Normalize":
        return [Blob(False, layer.get_int(3, 0), "scale")]
    if t == "Bias":
        return [Blob(False, layer.get_int(0, 0), "bias")]
    if t == "Padding":
        n = layer.get_int(6, 0)
        return [Blob(False, n, "pad_data")] if n else []
    if t == "InstanceNorm":
        c = layer.get_int(0, 0)
        return [Blob(False, c, "gamma"), Blob(False, c, "beta")] if layer.get_int(2, 1) else []
    if t == "GroupNorm":
        c = layer.get_int(1, 0)
        return [Blob(False, c, "gamma"), Blob(False, c, "beta")] if layer.get_int(3, 1) else []
    if t == "LayerNorm":
        n = layer.get_int(0, 0)
        return [Blob(False, n, "gamma"), Blob(False, n, "beta")] if layer.get_int(2, 1) else []
    if t == "Embed":
        num_output = layer.get_int(0, 0)
        blobs = [Blob(True, layer.get_int(3, 0), "embed")]
        if layer.get_int(2, 0):
            blobs.append(Blob(False, num_output, "bias"))
        return blobs
    if t == "MemoryData":
        w, h, d, c = (layer.get_int(k, 0) for k in (0, 1, 11, 2))
        count = max(w, 1) * max(h, 1) * max(d, 1) * max(c, 1) if w else 0
        return [Blob(not layer.get_int(21, 1), count, "data")] if count else []
    if t == "Quantize":
        return [Blob(False, layer.get_int(0, 1), "quant_scale")]
    if t == "Dequantize":
        nb = layer.get_int(1, 0)
        return [Blob(False, layer.get_int(0, 1), "scale")] + ([Blob(False, nb, "bias")] if nb else [])
    if t == "Requantize":
        nb = layer.get_int(2, 0)
        blobs = [Blob(False, layer.get_int(0, 1), "scale"),
                 Blob(False, layer.get_int(1, 1), "quant_scale")]
        return blobs + ([Blob(False, nb, "bias")] if nb else [])
    if t in WEIGHTLESS:
        return []
    raise ValueError(f"layer {layer.name}: no .bin load plan for type {t}")


# ------------------------------------------------------------------- writing


def model_seed(name):
    """Stable 64-bit seed from a model name."""
    return int.from_bytes(hashlib.sha256(name.encode()).digest()[:8], "little")


def _values(rng, blob, last_weight):
    n = blob.count
    role = blob.role
    if role == "weight":
        fan_in = max(1, n // max(1, blob.groups))
        std = np.sqrt(blob.gain / fan_in)
        return rng.standard_normal(n, dtype=np.float32) * np.float32(std)
    if role == "embed":
        return rng.standard_normal(n, dtype=np.float32)
    if role in ("bias", "bn_bias", "beta", "bn_mean"):
        return rng.uniform(-0.1, 0.1, n).astype(np.float32)
    if role in ("bn_slope", "bn_var", "scale", "gamma"):
        return rng.uniform(0.5, 1.5, n).astype(np.float32)
    if role == "prelu":
        return rng.uniform(0.05, 0.3, n).astype(np.float32)
    if role in ("data", "pad_data"):
        return rng.uniform(-1.0, 1.0, n).astype(np.float32)
    if role == "w_scale":
        # int8 weight scales that fit the weights just written, per group.
        absmax = np.abs(last_weight.reshape(blob.groups, -1)).max(axis=1)
        return (127.0 / np.maximum(absmax, 1e-6)).astype(np.float32)
    if role in ("in_scale", "out_scale", "quant_scale"):  # standalone layers: checked reads
        return np.full(n, 127.0 / 6.0, dtype=np.float32)  # activations within about +-6
    raise ValueError(role)


def _encode(values, blob, fp16):
    if blob.tagged and fp16:
        payload = np.uint32(FP16_TAG).tobytes() + values.astype("<f2").tobytes()
    elif blob.tagged:
        payload = np.uint32(0).tobytes() + values.astype("<f4").tobytes()
    else:
        payload = values.astype("<f4").tobytes()
    return payload + b"\0" * (-len(payload) % 4)


# Layers whose output is non-negative when all their inputs are.
_KEEPS_SIGN = {"Pooling", "Split", "Concat", "Flatten", "Reshape", "Permute", "Dropout",
               "Crop", "Slice", "ShuffleChannel", "Interp", "Noop", "Eltwise"}
_RESIDUAL_ADDS = {"Eltwise", "BinaryOp"}


def weight_gains(layers):
    """Variance gain of each weighted layer, so activations stay O(1).

    He init (gain 2) compensates for a ReLU on the layer's *input*; a layer
    fed by signed values (e.g. the linear bottleneck of mobilenet_v2) gets
    gain 1, otherwise the variance would double at every such layer. Layers
    that feed a residual add get a quarter of that, so the residual stream
    grows slowly instead of doubling per block (resnet50 has 16 blocks).
    """
    non_negative = set()
    residual_inputs = {b for l in layers if l.type in _RESIDUAL_ADDS for b in l.bottoms}
    gains = {}
    for layer in layers:
        inputs_non_negative = bool(layer.bottoms) and all(b in non_negative for b in layer.bottoms)
        out_non_negative = False
        if any(b.tagged for b in load_plan(layer)):
            gain = 2.0 if inputs_non_negative else 1.0
            if any(t in residual_inputs for t in layer.tops):
                gain *= 0.25
            gains[layer.name] = gain
            act = layer.get_int(9, 0)
            act_params = layer.get(10, [])
            out_non_negative = act in (1, 4) or (
                act == 3 and isinstance(act_params, list) and act_params[:1] >= [0.0])
        elif layer.type == "ReLU":
            out_non_negative = float(layer.get(0, 0.0)) == 0.0
        elif layer.type in ("Softmax", "Sigmoid"):
            out_non_negative = True
        elif layer.type in _KEEPS_SIGN:
            out_non_negative = inputs_non_negative
            if layer.type == "Eltwise":
                coeffs = layer.get(1, [])
                coeffs = coeffs if isinstance(coeffs, list) else [coeffs]
                out_non_negative &= layer.get_int(0, 1) in (1, 2) and min(coeffs, default=1) >= 0
        if out_non_negative:
            non_negative.update(layer.tops)
    return gains


def write_bin(param_text, path, seed, fp16=False):
    """Write random weights for `param_text` to `path`.

    Returns a byte length that ncnn must reject as truncated (None if the
    model has no weights): the file minus its last blob, or, when that blob is
    one ncnn does not check (UNCHECKED_READS), minus the payload of the
    last weight blob and everything after it.
    """
    rng = np.random.Generator(np.random.PCG64(seed))
    offset = 0
    short_len = None
    last_weight_payload = None
    layers = parse_param(param_text)
    gains = weight_gains(layers)
    with open(path, "wb") as f:
        for layer in layers:
            last_weight = None
            for blob in load_plan(layer):
                if blob.tagged:
                    blob.gain = gains[layer.name]
                values = _values(rng, blob, last_weight)
                if blob.role == "weight":
                    if fp16:  # scales must fit the weights ncnn will actually see
                        values = values.astype(np.float16).astype(np.float32)
                    last_weight = values
                data = _encode(values, blob, fp16)
                if blob.tagged:
                    last_weight_payload = offset + 4
                f.write(data)
                short_len = offset
                if blob.role in UNCHECKED_READS:
                    short_len = last_weight_payload
                offset += len(data)
    return short_len


def cached_bin(param_path, name, cache_dir, fp16=False):
    """Path to a verified random .bin for `param_path`, generating it if needed.

    Files are keyed by param content, seed, format and writer version, so
    reruns reuse them; each new file is checked against ncnn before use.
    """
    text = open(param_path).read()
    seed = model_seed(name)
    fmt = "fp16" if fp16 else "fp32"
    key = hashlib.sha256(f"{WRITER_VERSION}\n{seed}\n{fmt}\n{text}".encode()).hexdigest()[:16]
    os.makedirs(cache_dir, exist_ok=True)
    prefix = f"{name}.{fmt}."
    path = os.path.join(cache_dir, f"{prefix}{key}.bin")
    if os.path.exists(path):
        return path, False
    for old in os.listdir(cache_dir):  # drop stale versions (vgg16 is large)
        if old.startswith(prefix) and old.endswith(".bin"):
            os.remove(os.path.join(cache_dir, old))
    tmp = f"{path}.tmp{os.getpid()}"
    short_len = write_bin(text, tmp, seed, fp16)
    try:
        check_exact(param_path, tmp, short_len)
    except Exception:
        os.remove(tmp)
        raise
    os.replace(tmp, path)
    return path, True


# ------------------------------------------------------------ ncnn checking


def _counting_reader_class():
    import ncnn

    memmove = ctypes.memmove
    get_pointer = ctypes.pythonapi.PyCapsule_GetPointer
    get_pointer.restype = ctypes.c_void_p
    get_pointer.argtypes = [ctypes.py_object, ctypes.c_char_p]

    class CountingReader(ncnn.DataReader):
        """Serves bytes from a numpy buffer and counts what the loader reads."""

        def __init__(self, data, limit=None):
            super().__init__()
            self.data = data
            self.base = data.ctypes.data
            self.limit = len(data) if limit is None else limit
            self.consumed = 0

        def scan(self, fmt, p):
            return 0

        def read(self, buf, size):
            n = min(size, self.limit - self.consumed)
            if n > 0:
                memmove(get_pointer(buf, None), self.base + self.consumed, n)
                self.consumed += n
            return max(n, 0)

    return CountingReader


def make_net(num_threads=1):
    """An ncnn Net set up for plain fp32 inference (no fp16/bf16/int8)."""
    import ncnn

    net = ncnn.Net()
    opt = net.opt
    opt.num_threads = num_threads
    opt.lightmode = False
    opt.use_fp16_storage = False
    opt.use_fp16_packed = False
    opt.use_fp16_arithmetic = False
    opt.use_bf16_storage = False
    opt.use_bf16_packed = False
    opt.use_int8_inference = False
    opt.use_vulkan_compute = False
    return net


class _QuietStderr:
    """Silence ncnn's own error prints (fd 2) while we provoke a failure."""

    def __enter__(self):
        self.saved = os.dup(2)
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, 2)
        os.close(devnull)

    def __exit__(self, *exc):
        os.dup2(self.saved, 2)
        os.close(self.saved)


def load_counting(net, bin_path, limit=None, quiet=False):
    """Load weights into `net` through a counting reader.

    Returns (ncnn return code, bytes consumed, file size).
    """
    data = np.fromfile(bin_path, dtype=np.uint8)
    reader = _counting_reader_class()(data, limit)
    if quiet:
        with _QuietStderr():
            ret = net.load_model(reader)
    else:
        ret = net.load_model(reader)
    return ret, reader.consumed, len(data)


def ncnn_consumed_bytes(param_path, bin_path, limit=None, quiet=False):
    net = make_net()
    # ncnn 1.0.20261020 crashes loading some int8 params (resnet50_int8)
    # with int8 inference off, so load those as ncnn's int8 path would.
    text = open(param_path).read()
    net.opt.use_int8_inference = any(l.get_int(8, 0) for l in parse_param(text))
    if net.load_param(param_path) != 0:
        raise RuntimeError(f"ncnn failed to load {param_path}")
    return load_counting(net, bin_path, limit, quiet)


def check_exact(param_path, bin_path, short_len):
    """Raise unless ncnn reads exactly the whole file, and fails on the file
    cut to `short_len` bytes (one blob shorter; ncnn-format.md section 4.5)."""
    ret, consumed, size = ncnn_consumed_bytes(param_path, bin_path)
    if ret != 0 or consumed != size:
        raise RuntimeError(
            f"{bin_path}: ncnn load_model returned {ret}, consumed {consumed} of {size} bytes")
    if short_len is not None:
        ret, _, _ = ncnn_consumed_bytes(param_path, bin_path, short_len, quiet=True)
        if ret == 0:
            raise RuntimeError(f"{bin_path}: ncnn accepted the file cut to {short_len} bytes")


def planned_size(param_text, fp16=False):
    """Byte size of a .bin for `param_text` whose weights are all fp32 or all fp16."""
    total = 0
    for layer in parse_param(param_text):
        for blob in load_plan(layer):
            if blob.tagged:
                size = 4 + blob.count * (2 if fp16 else 4)
            else:
                size = blob.count * 4
            total += size + (-size % 4)
    return total
