#!/usr/bin/env python3
"""Writes a GGUF v3 model with random weights that a real llama-server loads and answers with.

No weights can be downloaded where arun is tested, so the end-to-end tests that run a real
llama.cpp engine use models written here, with Python's standard library only. The model is a
llama architecture with an SPM vocabulary (the 256 byte-fallback tokens <0x00>..<0xFF>, the
special tokens, printable characters and a few words with their prefixes, so the tokenizer can
merge them), a ChatML chat template, and seeded random weights: the same arguments give the same
file, byte for byte.

Random weights would sample any token, and a byte token that is not printable ASCII breaks UTF-8,
which llama-server answers with HTTP 500. So the weights are shaped to keep those tokens out:
every token embedding holds a constant BIAS in dimension 0, and no layer writes to dimension 0
(row 0 of each layer's output projections is zero), so after the final RMS norm dimension 0 is
always a large positive number. An output row that is 0 except for a large negative weight in
dimension 0 then gives its token a logit far below every other one. Those rows are the special
tokens' and the non-printable bytes'. With --stops the end-of-turn token <|im_end|> gets a
positive weight there instead, so the model ends its answer by itself after a few tokens;
without it the model writes until max_tokens.

Sizes: --tiny (dim 64, 2 layers, F32, under 1 MB, written in well under a second) and --big
(dim 1024, 8 layers, F16, ~180 MB: llama-server takes a visible moment to load it and answers
503 "Loading model" meanwhile). --corrupt writes the tiny model cut short inside the tensor data,
which llama-server refuses with "tensor 'token_embd.weight' data is not within the file bounds".

Usage: make_gguf.py --tiny|--big [--stops] [--corrupt] [--seed N] OUT.gguf
"""

import argparse
import os
import random
import struct
import sys

# GGUF value types (ggml/include/gguf.h) and tensor types (ggml.h).
T_UINT32, T_INT32, T_FLOAT32, T_BOOL, T_STRING, T_ARRAY = 4, 5, 6, 7, 8, 9
GGML_F32, GGML_F16 = 0, 1
ALIGNMENT = 32  # GGUF_DEFAULT_ALIGNMENT: tensor data offsets are multiples of it

# SentencePiece token types (llama.cpp's llama_token_type).
TOK_NORMAL, TOK_UNKNOWN, TOK_CONTROL, TOK_BYTE = 1, 2, 3, 6

SIZES = {
    # dim, layers, heads, feed-forward width, context, tensor type of the matrices
    'tiny': dict(dim=64, layers=2, heads=2, ff=128, ctx=1024, ftype=GGML_F32),
    'big': dict(dim=1024, layers=8, heads=16, ff=2304, ctx=2048, ftype=GGML_F16),
}

SIGMA = 0.02  # standard deviation of the random weights, as in a freshly initialised llama
BIAS = 1.0  # dimension 0 of every token embedding (the module doc says why)
BANNED_WEIGHT = -100.0  # dimension 0 of a banned token's output row: a logit of -100 * ~8 or less
EOT_LOGIT = 1.5  # with --stops: <|im_end|> about 1.5 above the others, so an answer is ~5-10 tokens

SPACE = '\u2581'  # SentencePiece writes a space as U+2581
WORDS = ('the of and to in is it you that he was for on are with as his they be at one have '
         'this from or had by hot word but what some we can out other were all there when up '
         'use your how said an each she which do their time if will way about many then them '
         'hello world model engine token answer test').split()

CHATML = ("{% for message in messages %}{{'<|im_start|>' + message['role'] + '\\n' + "
          "message['content'] + '<|im_end|>' + '\\n'}}{% endfor %}"
          "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}")


def vocabulary():
    """Returns [(text, score, type)]: ids 0-2 <unk> <s> </s>, then the 256 bytes, then the rest."""
    toks = [('<unk>', 0.0, TOK_UNKNOWN), ('<s>', 0.0, TOK_CONTROL), ('</s>', 0.0, TOK_CONTROL)]
    toks += [('<0x%02X>' % b, 0.0, TOK_BYTE) for b in range(256)]
    toks += [('<|im_start|>', 0.0, TOK_CONTROL), ('<|im_end|>', 0.0, TOK_CONTROL)]
    pieces = [SPACE] + [chr(c) for c in range(0x21, 0x7F)]
    for w in WORDS:  # SPM merges pairs of pieces in the vocabulary: every prefix must be one
        for n in range(1, len(w) + 1):
            pieces += [w[:n], SPACE + w[:n]]
    seen = set()
    for p in pieces:
        if p not in seen:
            seen.add(p)
            toks.append((p, float(len(p)), TOK_NORMAL))  # longer merges win
    return toks


def banned(text, ttype, stops):
    """True for a token the model must never sample (the module doc says why)."""
    if ttype == TOK_BYTE:
        b = int(text[3:5], 16)
        return not (0x20 <= b < 0x7F or b == 0x0A)
    if text == '<|im_end|>':
        return not stops
    return ttype != TOK_NORMAL


class Weights:
    """Seeded random tensor data, fast enough for the 180 MB model in pure Python: a pool of
    gaussian values is packed once and each tensor is assembled from slices of it at random
    offsets (prime length, so rows do not line up with the pool's period)."""

    POOL = 1 << 18
    CHUNK = 4093

    def __init__(self, seed, fmt):
        self.rng = random.Random(seed)
        self.fmt = fmt
        self.size = struct.calcsize('<' + fmt)
        values = [self.rng.gauss(0.0, SIGMA) for _ in range(self.POOL + self.CHUNK)]
        self.pool = struct.pack('<%d%s' % (len(values), fmt), *values)

    def random(self, n):
        out = bytearray()
        while len(out) < n * self.size:
            off = self.rng.randrange(self.POOL) * self.size
            take = min(self.CHUNK, n - len(out) // self.size) * self.size
            out += self.pool[off:off + take]
        return out

    def pack(self, values):
        return struct.pack('<%d%s' % (len(values), self.fmt), *values)


def tensors(size, vocab, stops, seed):
    """Yields (name, dims, ggml type, data) in file order; token_embd.weight first, so a file cut
    short inside the data fails on it (llama_model_loader checks the tensors in file order)."""
    dim, ff, ftype = size['dim'], size['ff'], size['ftype']
    w = Weights(seed, 'e' if ftype == GGML_F16 else 'f')
    f32 = Weights(seed + 1, 'f')
    ones = f32.pack([1.0] * dim)
    nv = len(vocab)

    emb = w.random(dim * nv)
    for t in range(nv):
        emb[t * dim * w.size:(t * dim + 1) * w.size] = w.pack([BIAS])
    yield 'token_embd.weight', (dim, nv), ftype, emb

    for i in range(size['layers']):
        def matrix(cols, rows, zero_row0=False):
            data = w.random(cols * rows)
            if zero_row0:  # output dimension 0 of this projection stays 0
                data[:cols * w.size] = bytes(cols * w.size)
            return data
        yield 'blk.%d.attn_norm.weight' % i, (dim,), GGML_F32, ones
        yield 'blk.%d.attn_q.weight' % i, (dim, dim), ftype, matrix(dim, dim)
        yield 'blk.%d.attn_k.weight' % i, (dim, dim), ftype, matrix(dim, dim)
        yield 'blk.%d.attn_v.weight' % i, (dim, dim), ftype, matrix(dim, dim)
        yield 'blk.%d.attn_output.weight' % i, (dim, dim), ftype, matrix(dim, dim, True)
        yield 'blk.%d.ffn_norm.weight' % i, (dim,), GGML_F32, ones
        yield 'blk.%d.ffn_gate.weight' % i, (dim, ff), ftype, matrix(dim, ff)
        yield 'blk.%d.ffn_up.weight' % i, (dim, ff), ftype, matrix(dim, ff)
        yield 'blk.%d.ffn_down.weight' % i, (ff, dim), ftype, matrix(ff, dim, True)

    yield 'output_norm.weight', (dim,), GGML_F32, ones
    # Dimension 0 after the final norm is about BIAS / rms(x) ~ sqrt(dim) (the others are small).
    h0 = (dim / (1 + (dim - 1) * SIGMA * SIGMA)) ** 0.5
    out = w.random(dim * nv)
    for t, (text, _, ttype) in enumerate(vocab):
        row = None
        if banned(text, ttype, stops):
            row = [BANNED_WEIGHT] + [0.0] * (dim - 1)
        elif text == '<|im_end|>':
            row = [EOT_LOGIT / h0] + [0.0] * (dim - 1)
        if row:
            out[t * dim * w.size:(t + 1) * dim * w.size] = w.pack(row)
    yield 'output.weight', (dim, nv), ftype, out


def gguf_string(s):
    b = s.encode('utf-8')
    return struct.pack('<Q', len(b)) + b


def kv(key, vtype, value):
    """One metadata pair; arrays are (element type, list)."""
    out = gguf_string(key) + struct.pack('<I', vtype)
    if vtype == T_ARRAY:
        etype, items = value
        out += struct.pack('<IQ', etype, len(items))
        for item in items:
            out += scalar(etype, item)
        return out
    return out + scalar(vtype, value)


def scalar(vtype, v):
    if vtype == T_STRING:
        return gguf_string(v)
    return struct.pack({T_UINT32: '<I', T_INT32: '<i', T_FLOAT32: '<f', T_BOOL: '<?'}[vtype], v)


def metadata(name, size, vocab):
    head_dim = size['dim'] // size['heads']
    eot = [t for t, (text, _, _) in enumerate(vocab) if text == '<|im_end|>'][0]
    return [
        kv('general.architecture', T_STRING, 'llama'),
        kv('general.name', T_STRING, 'arun-test-' + name),
        kv('general.file_type', T_UINT32, 1 if size['ftype'] == GGML_F16 else 0),
        kv('llama.context_length', T_UINT32, size['ctx']),
        kv('llama.embedding_length', T_UINT32, size['dim']),
        kv('llama.block_count', T_UINT32, size['layers']),
        kv('llama.feed_forward_length', T_UINT32, size['ff']),
        kv('llama.attention.head_count', T_UINT32, size['heads']),
        kv('llama.attention.head_count_kv', T_UINT32, size['heads']),
        kv('llama.attention.layer_norm_rms_epsilon', T_FLOAT32, 1e-5),
        kv('llama.rope.dimension_count', T_UINT32, head_dim),
        kv('llama.rope.freq_base', T_FLOAT32, 10000.0),
        kv('llama.vocab_size', T_UINT32, len(vocab)),
        kv('tokenizer.ggml.model', T_STRING, 'llama'),
        kv('tokenizer.ggml.tokens', T_ARRAY, (T_STRING, [t for t, _, _ in vocab])),
        kv('tokenizer.ggml.scores', T_ARRAY, (T_FLOAT32, [s for _, s, _ in vocab])),
        kv('tokenizer.ggml.token_type', T_ARRAY, (T_INT32, [k for _, _, k in vocab])),
        kv('tokenizer.ggml.unknown_token_id', T_UINT32, 0),
        kv('tokenizer.ggml.bos_token_id', T_UINT32, 1),
        kv('tokenizer.ggml.eos_token_id', T_UINT32, eot),
        kv('tokenizer.ggml.add_bos_token', T_BOOL, False),
        kv('tokenizer.chat_template', T_STRING, CHATML),
    ]


def pad(n):
    return (ALIGNMENT - n % ALIGNMENT) % ALIGNMENT


def write(path, name, stops, corrupt, seed):
    size = SIZES[name]
    vocab = vocabulary()
    kvs = metadata(name, size, vocab)
    infos, datas, offset = [], [], 0
    for tname, dims, ttype, data in tensors(size, vocab, stops, seed):
        infos.append(gguf_string(tname) + struct.pack('<I', len(dims)) +
                     struct.pack('<%dQ' % len(dims), *dims) + struct.pack('<IQ', ttype, offset))
        datas.append(bytes(data) + bytes(pad(len(data))))
        offset += len(datas[-1])
    header = struct.pack('<4sIQQ', b'GGUF', 3, len(infos), len(kvs)) + b''.join(kvs + infos)
    header += bytes(pad(len(header)))
    tmp = '%s.tmp%d' % (path, os.getpid())
    with open(tmp, 'wb') as f:
        f.write(header)
        if corrupt:
            f.write(datas[0][:len(datas[0]) // 2])  # token_embd.weight runs past the end
        else:
            for d in datas:
                f.write(d)
    os.replace(tmp, path)  # readers never see half a file (tests share a cache)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    g = ap.add_mutually_exclusive_group(required=True)
    g.add_argument('--tiny', action='store_true', help='dim 64, 2 layers, F32, under 1 MB')
    g.add_argument('--big', action='store_true', help='dim 1024, 8 layers, F16, ~180 MB')
    ap.add_argument('--stops', action='store_true',
                    help='let <|im_end|> be sampled, so answers end by themselves')
    ap.add_argument('--corrupt', action='store_true',
                    help='cut the file short inside token_embd.weight')
    ap.add_argument('--seed', type=int, default=1)
    ap.add_argument('out')
    a = ap.parse_args()
    write(a.out, 'big' if a.big else 'tiny', a.stops, a.corrupt, a.seed)


if __name__ == '__main__':
    sys.exit(main())
