/* conv_winograd.c — 3x3 stride-1 convolution by Winograd's minimal filtering F(4x4, 3x3).
 *
 * Each 4x4 block of output pixels (a tile) of one image and output channel is
 *     Y = A^T [ sum_c (G g_c G^T) (.) (B^T d_c B) ] A
 * with d_c the 6x6 input patch under the tile (zero outside the image), g_c the
 * 3x3 filter, (.) the element-wise product, and the matrices of Lavin & Gray's
 * F(4x4,3x3) at the points 0, +-1, +-2, inf (below). 36 multiplies per 16 outputs and
 * input channel instead of 144. Summed over c, the 36 element-wise products are 36
 * independent GEMMs, one per position xi of the 6x6 transform:
 *     M[xi] (OC x tiles) = U[xi] (OC x C) . V[xi] (C x tiles),
 * which run on the SGEMM driver's micro-kernels at full speed: U[xi] is packed once
 * at plan time into the micro-kernel's MR-row A panels (nd_wino_pack_w), and the
 * input transform writes V[xi] straight into NR-wide packed B panels, so the GEMMs
 * pack nothing. The tiles are processed in chunks of tcp (a multiple of 32, so every
 * ISA's NR divides it) sized to keep V and M of a chunk in cache:
 *     [V: 36 planes of C*tcp][M: 36 planes of OC*tcp][flags: tcp][GEMM workspace],
 * and a chunk is three phases: input transform (per input channel), the 36 GEMMs,
 * output transform (per output channel) with bias, residual and activation. How the
 * threads share the chunks: see private_chunks.
 *
 * Accuracy: the transforms have coefficients up to 8 and the error grows with them;
 * measured against a float64 reference, about 4e-6 relative per layer at C = 512
 * (direct GEMM: ~5e-7); tests/ops/test_winograd.py bounds it, and the zoo's outputs
 * stay within 1e-4 of the numpy reference (tests/e2e).
 *
 *   B^T = [4  0 -5  0 1 0]   G = [ 1/4    0     0  ]   A^T = [1 1  1 1  1 0]
 *         [0 -4 -4  1 1 0]       [-1/6 -1/6  -1/6 ]         [0 1 -1 2 -2 0]
 *         [0  4 -4 -1 1 0]       [-1/6  1/6  -1/6 ]         [0 1  1 4  4 0]
 *         [0 -2 -1  2 1 0]       [1/24  1/12  1/6 ]         [0 1 -1 8 -8 1]
 *         [0  2 -1 -2 1 0]       [1/24 -1/12  1/6 ]
 *         [0  4  0 -5 0 1]       [  0     0     1  ]
 */
#include "winograd.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "dispatch.h"
#include "kernels/gemm.h"
#ifdef _OPENMP
#include <omp.h>
#endif

enum { WL = 8, TILE_ALIGN = 32 };

static inline int64_t rup(int64_t a, int64_t b) { return (a + b - 1) / b * b; }
static inline int64_t max64(int64_t a, int64_t b) { return a > b ? a : b; }

typedef struct {
    const float *x, *res, *bias;
    const float *wraw;   /* the untransformed weights (OC, C, 3, 3), kept after U */
    float *vp, *mb, *y;
    int32_t *bad;        /* per tile of the chunk: its patch holds NaN/inf (or overflowed) */
    int64_t c, h, w, oc, oh, ow, pt, pl;
    int64_t th, tw;   /* tiles per image along y and x */
    int64_t tcp;      /* tile slots per chunk */
    int64_t vplane, mplane;   /* floats between the 36 V and M planes (see plane_floats) */
    int64_t nr;       /* the B panels' width (the ISA's NR) */
    int act;
} wino_job;

/* the activation of one stored value; comparisons written so that NaN stays NaN */
static inline float wino_act(float v, int act) { return nd_act1(v, act); }   /* dispatch.h */

/* One output pixel the direct way, without bias. Winograd's transforms mix every value
 * of a 6x6 patch into all 16 outputs of the tile, so one NaN or inf input would turn the
 * whole tile (and its neighbours' overlaps) into NaN where a direct convolution gives
 * numbers; tiles whose transformed patch is not finite are recomputed here instead. */
static float wino_direct(const wino_job *j, int64_t b, int64_t oc, int64_t oy, int64_t ox)
{
    float s = 0.0f;
    for (int64_t c = 0; c < j->c; c++) {
        const float *xc = j->x + (b * j->c + c) * j->h * j->w, *g = j->wraw + (oc * j->c + c) * 9;
        for (int ky = 0; ky < 3; ky++) {
            const int64_t iy = oy - j->pt + ky;
            if (iy < 0 || iy >= j->h)
                continue;
            for (int kx = 0; kx < 3; kx++) {
                const int64_t ix = ox - j->pl + kx;
                if (ix >= 0 && ix < j->w)
                    s += xc[iy * j->w + ix] * g[ky * 3 + kx];
            }
        }
    }
    return s;
}

#define WTGT
#define WFN(name) name##_portable
#include "conv_winograd_body.inc"
#undef WTGT
#undef WFN
#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define WTGT __attribute__((target("avx2,fma")))

/* d[r][i][l]: row r, column i of the 6x6 input patch of tile t + l of the chunk, the 8 lanes
 * of a group (0 past tc and outside the image), as the portable body's scalar gather makes it
 * (36 loads and stores per tile and channel): here each lane's patch row is one masked
 * 6-float load (a tile on the border builds its rows in buf first), and per row r an 8x8
 * transpose turns 8 tiles' rows into the 6 lane-major columns. Measured (Zen 5): DenseNet's
 * 128->32 on 56x56 1.17 -> 1.13 ms at 1 thread, 0.70 -> 0.66 at 2; 64->64 about 1%. */
WTGT static void wino_gather_avx2(const wino_job *j, int64_t c, int64_t t0, int64_t t, int64_t tc,
                                  float d[6][6][WL])
{
    const int64_t H = j->h, W = j->w, HW = H * W, tpi = j->th * j->tw;
    float buf[WL][6][8];
    const float *src[WL];
    int64_t rs[WL];
    for (int l = 0; l < WL; l++) {
        const int64_t tl = t + l;
        src[l] = &buf[l][0][0];
        rs[l] = 8;
        if (tl >= tc) {
            memset(buf[l], 0, sizeof buf[l]);
            continue;
        }
        const int64_t g = t0 + tl, b = g / tpi, rr = g % tpi, ty = rr / j->tw, tx = rr % j->tw;
        const float *xc = j->x + (b * j->c + c) * HW;
        const int64_t iy0 = 4 * ty - j->pt, ix0 = 4 * tx - j->pl;
        if (iy0 >= 0 && iy0 + 6 <= H && ix0 >= 0 && ix0 + 6 <= W) {
            src[l] = xc + iy0 * W + ix0;
            rs[l] = W;
            continue;
        }
        for (int r = 0; r < 6; r++) {
            const int64_t iy = iy0 + r;
            for (int i = 0; i < 6; i++) {
                const int64_t ix = ix0 + i;
                buf[l][r][i] = (iy >= 0 && iy < H && ix >= 0 && ix < W) ? xc[iy * W + ix] : 0.0f;
            }
        }
    }
    const __m256i m6 = _mm256_setr_epi32(-1, -1, -1, -1, -1, -1, 0, 0);
    for (int r = 0; r < 6; r++) {
        __m256 v[WL];
        for (int l = 0; l < WL; l++) v[l] = _mm256_maskload_ps(src[l] + r * rs[l], m6);
        const __m256 a0 = _mm256_unpacklo_ps(v[0], v[1]), a1 = _mm256_unpackhi_ps(v[0], v[1]);
        const __m256 a2 = _mm256_unpacklo_ps(v[2], v[3]), a3 = _mm256_unpackhi_ps(v[2], v[3]);
        const __m256 a4 = _mm256_unpacklo_ps(v[4], v[5]), a5 = _mm256_unpackhi_ps(v[4], v[5]);
        const __m256 a6 = _mm256_unpacklo_ps(v[6], v[7]), a7 = _mm256_unpackhi_ps(v[6], v[7]);
        const __m256 b0 = _mm256_shuffle_ps(a0, a2, 0x44), b1 = _mm256_shuffle_ps(a0, a2, 0xEE);
        const __m256 b2 = _mm256_shuffle_ps(a1, a3, 0x44), b3 = _mm256_shuffle_ps(a1, a3, 0xEE);
        const __m256 b4 = _mm256_shuffle_ps(a4, a6, 0x44), b5 = _mm256_shuffle_ps(a4, a6, 0xEE);
        const __m256 b6 = _mm256_shuffle_ps(a5, a7, 0x44), b7 = _mm256_shuffle_ps(a5, a7, 0xEE);
        _mm256_storeu_ps(d[r][0], _mm256_permute2f128_ps(b0, b4, 0x20));
        _mm256_storeu_ps(d[r][1], _mm256_permute2f128_ps(b1, b5, 0x20));
        _mm256_storeu_ps(d[r][2], _mm256_permute2f128_ps(b2, b6, 0x20));
        _mm256_storeu_ps(d[r][3], _mm256_permute2f128_ps(b3, b7, 0x20));
        _mm256_storeu_ps(d[r][4], _mm256_permute2f128_ps(b0, b4, 0x31));
        _mm256_storeu_ps(d[r][5], _mm256_permute2f128_ps(b1, b5, 0x31));
    }
}

#define WGATHER wino_gather_avx2
#define WFN(name) name##_avx2
#include "conv_winograd_body.inc"
#undef WTGT
#undef WFN
#undef WGATHER
#endif

typedef void (*wino_fn)(const wino_job *, int64_t, int64_t, int64_t);

/* AVX-512 machines run the AVX2 bodies (8 tiles per group keep one code path; the GEMMs take
 * the ISA's own micro-kernel). The transforms are not a small part everywhere: with few output
 * channels the input transform dominates (DenseNet's 128->32 on 56x56, 1 thread, perf:
 * wino_in 58%, the GEMMs 19%, wino_out 9%); vector loads for its gather (wino_gather_avx2)
 * took only 3-6% off that conv, so the rest is the arithmetic and the 36 planes' stores. */
static void wino_fns(wino_fn *in, wino_fn *out)
{
#if defined(__x86_64__) || defined(__i386__)
    if (nd_ops()->level >= ND_ISA_AVX2) {
        *in = wino_in_avx2;
        *out = wino_out_avx2;
        return;
    }
#endif
    *in = wino_in_portable;
    *out = wino_out_portable;
}

int nd_wino_geom(const nd_conv_params *p)
{
    return p->kh == 3 && p->kw == 3 && p->sh == 1 && p->sw == 1 && p->dh == 1 && p->dw == 1 && p->groups == 1;
}

static int64_t tiles_of(const nd_conv_params *p) { return p->n * ((p->oh + 3) / 4) * ((p->ow + 3) / 4); }

/* Tile slots per chunk, a multiple of 32: V and M of a chunk in about `budget` floats,
 * at least 32 and at most 1024 slots, and at most `cap` (itself rounded up to 32). */
static int64_t chunk_slots(const nd_conv_params *p, int64_t budget, int64_t cap)
{
    int64_t t = budget / (36 * (p->c + p->oc));
    t = t < 32 ? 32 : t > 1024 ? 1024 : t;
    t = t / TILE_ALIGN * TILE_ALIGN;
    cap = rup(cap < 1 ? 1 : cap, TILE_ALIGN);
    return cap < t ? cap : t;
}

/* Two ways to run a chunk of tiles on T threads:
 *   - shared: the threads work on one chunk at a time, splitting each phase
 *     (input channels, the 36 GEMMs, output channels), with a barrier between phases;
 *     8 MiB for the chunk's V and M. For few tiles (small maps at batch 1).
 *   - private: each thread takes whole chunks (dynamically, so a thread slowed by
 *     another process on its core just takes fewer) and runs the three phases alone
 *     in its own 4 MiB; no barriers. When every thread gets >= 2 chunks of >= 32 tiles.
 * Both are functions of the params (T = p->threads), so the workspace agrees. */
static int private_chunks(const nd_conv_params *p, int T) { return T > 1 && tiles_of(p) >= 2 * T * TILE_ALIGN; }
static int64_t shared_slots(const nd_conv_params *p) { return chunk_slots(p, (int64_t)1 << 21, tiles_of(p)); }
/* about four chunks per thread: with two, 196 tiles (56x56) made chunks of 64, 64, 64, 4 and
 * one thread did 128 tiles while the other did 68 (64 -> 64 at 2 threads, min of 4 alternated
 * rounds: 0.645 -> 0.617 ms) */
static int64_t private_slots(const nd_conv_params *p, int T)
{
    return chunk_slots(p, (int64_t)1 << 20, (tiles_of(p) + 4 * T - 1) / (4 * T));
}
/* Floats between consecutive planes of V (rows = C) or M (rows = OC) of a chunk: rows*tcp
 * is a multiple of 4 KiB whenever rows is a multiple of 32, so the input transform's 36
 * stores per tile group (and the output transform's 36 loads) would all fall in one
 * cache set; 16 floats more per plane spread them over the sets. */
static int64_t plane_floats(int64_t rows, int64_t tcp) { return rows * tcp + 16; }
/* V (36 planes), M (36 planes) and the tile flags of a chunk */
static int64_t vm_floats(const nd_conv_params *p, int64_t tcp)
{
    return 36 * (plane_floats(p->c, tcp) + plane_floats(p->oc, tcp)) + tcp;
}
/* one chunk's V, M, flags and GEMM workspace */
static int64_t chunk_floats(const nd_conv_params *p, int64_t tcp)
{
    return vm_floats(p, tcp) + nd_sgemm_ws(p->oc, tcp, p->c, 1) + 16;
}

/* The auto rule. Winograd does 4x fewer multiply-adds but adds the transforms (about
 * 40 + 20 operations per tile and channel) and wastes the tile cells past the map's
 * edge, so it needs enough channels to amortize them and enough tiles for the GEMMs'
 * N (the micro-kernel is NR tiles wide). Measured on Zen 3 (AVX2), 1 and 2 threads:
 * see docs/PERFORMANCE.md. */
int nd_wino_auto(const nd_conv_params *p)
{
    if (!nd_wino_geom(p))
        return 0;
    const double used = (double)(p->oh * p->ow) / (double)(rup(p->oh, 4) * rup(p->ow, 4));
    return p->c >= 16 && p->oc >= 16 && tiles_of(p) >= 16 && used >= 0.7;
}

int64_t nd_wino_ws_floats(const nd_conv_params *p, int threads)
{
    const int T = threads < 1 ? 1 : threads;
    const int64_t ts = shared_slots(p);
    int64_t ws = vm_floats(p, ts) + T * (nd_sgemm_ws(p->oc, ts, p->c, 1) + 16) + 16;
    if (private_chunks(p, T))
        ws = max64(ws, T * chunk_floats(p, private_slots(p, T)) + 16);
    return ws;
}

int64_t nd_wino_packed_w_floats(const nd_conv_params *p, int64_t mr)
{
    return 36 * rup(p->oc, mr) * p->c + p->oc * p->c * 9;   /* U, then the weights as given */
}

/* U[xi][oc][c] = (G g G^T)[xi], computed in double, then each xi packed into A panels;
 * after them the weights as given, for the tiles recomputed directly (wino_direct). */
nd_status nd_wino_pack_w(const nd_conv_params *p, float *dst, const float *w, int64_t mr)
{
    static const double G[6][3] = {{0.25, 0, 0}, {-1.0 / 6, -1.0 / 6, -1.0 / 6}, {-1.0 / 6, 1.0 / 6, -1.0 / 6},
                                   {1.0 / 24, 1.0 / 12, 1.0 / 6}, {1.0 / 24, -1.0 / 12, 1.0 / 6}, {0, 0, 1}};
    const int64_t OC = p->oc, C = p->c, per = rup(OC, mr) * C;
    if (mr <= 0)
        return ND_EINVAL;
    /* U[xi] = G g G^T per (o, c), written straight into the MR-row A panels the GEMMs read
     * (nd_gemm_pack_a's layout: panel o / mr at (o / mr) * mr * C, element c * mr + o % mr;
     * the rows past OC in the last panel are 0). A training step transforms its changed
     * weights on every call, so the output channels are split over the threads. */
    const int T = nd_threads(p->threads);
    (void)T;
#pragma omp parallel for schedule(static) num_threads(T) if (T > 1 && OC * C > 4096)
    for (int64_t o = 0; o < OC; o++) {
        float *panel = dst + (o / mr) * mr * C + o % mr;
        for (int64_t c = 0; c < C; c++) {
            const float *g = w + (o * C + c) * 9;
            double t[6][3];   /* G g */
            for (int k = 0; k < 6; k++)
                for (int b = 0; b < 3; b++)
                    t[k][b] = G[k][0] * g[0 * 3 + b] + G[k][1] * g[1 * 3 + b] + G[k][2] * g[2 * 3 + b];
            for (int k = 0; k < 6; k++)
                for (int q = 0; q < 6; q++)
                    panel[(k * 6 + q) * per + c * mr] =
                        (float)(t[k][0] * G[q][0] + t[k][1] * G[q][1] + t[k][2] * G[q][2]);
        }
    }
    if (OC % mr)                        /* the last panel's missing rows */
        for (int64_t xi = 0; xi < 36; xi++) {
            float *panel = dst + xi * per + (OC / mr) * mr * C;
            for (int64_t c = 0; c < C; c++)
                for (int64_t r = OC % mr; r < mr; r++) panel[c * mr + r] = 0.0f;
        }
    memcpy(dst + 36 * per, w, (size_t)(OC * C * 9) * sizeof(float));
    return ND_OK;
}

/* the 36 GEMMs M[xi] = U[xi] . V[xi] of one chunk (xi in [x0, x1)) */
static nd_status wino_gemms(const wino_job *j, const float *w, int64_t uper, int32_t mr, int64_t tc, int64_t x0,
                            int64_t x1, float *gws)
{
    nd_status st = ND_OK;
    for (int64_t xi = x0; xi < x1; xi++) {
        nd_gemm_desc d = {0};
        d.m = j->oc;
        d.n = tc;
        d.k = j->c;
        d.a.p = w + xi * uper;
        d.a.packed_mr = mr;
        d.b.p = j->vp + xi * j->vplane;
        d.b.packed_nr = (int32_t)j->nr;
        d.b.rs = j->c;
        d.c = j->mb + xi * j->mplane;
        d.ldc = j->tcp;
        nd_status s = nd_sgemm(&d, gws, 1);
        if (s != ND_OK)
            st = s;
    }
    return st;
}

/* a job whose chunk buffers start at buf (tcp slots) */
static wino_job job_at(const nd_conv_params *p, float *out, const float *x, const float *wraw, const float *bias,
                       const float *res, float *buf, int64_t tcp, int64_t nr)
{
    const int64_t C = p->c, OC = p->oc, vplane = plane_floats(C, tcp), mplane = plane_floats(OC, tcp);
    wino_job j = {x, res, bias, wraw, buf, buf + 36 * vplane, out, (int32_t *)(buf + 36 * (vplane + mplane)), C,
                  p->h, p->w, OC, p->oh, p->ow, p->pad_t, p->pad_l, (p->oh + 3) / 4, (p->ow + 3) / 4, tcp, vplane,
                  mplane, nr, p->act};
    return j;
}

nd_status nd_wino_run(const nd_conv_params *p, float *out, const float *x, const float *w, const float *bias,
                      const float *res, float *ws, int threads)
{
    if (!ws || p->w_packed_mr <= 0)
        return ND_EINVAL;
    const nd_isa_ops *o = nd_ops();
    const int64_t total = tiles_of(p), C = p->c, OC = p->oc;
    const int32_t mr = p->w_packed_mr;
    const int64_t uper = rup(OC, mr) * C;
    const float *wraw = w + 36 * uper;
    if (TILE_ALIGN % o->nr)
        return ND_EUNSUPPORTED;   /* never: every ISA's NR divides 32 */
    wino_fn fin, fout;
    wino_fns(&fin, &fout);
    const int T = threads < 1 ? 1 : threads;
    nd_status st = ND_OK;
    if (private_chunks(p, T)) {
        const int64_t tcp = private_slots(p, T), per = chunk_floats(p, tcp), nch = (total + tcp - 1) / tcp;
#pragma omp parallel for schedule(dynamic, 1) num_threads(T)
        for (int64_t ch = 0; ch < nch; ch++) {
            int tid = 0;
#ifdef _OPENMP
            tid = omp_get_thread_num();
#endif
            float *buf = ws + tid * per;
            const wino_job j = job_at(p, out, x, wraw, bias, res, buf, tcp, o->nr);
            const int64_t t0 = ch * tcp, tc = total - t0 < tcp ? total - t0 : tcp;
            for (int64_t t = 0; t < tcp; t++) j.bad[t] = 0;
            for (int64_t c = 0; c < C; c++) fin(&j, c, t0, tc);
            nd_status s = wino_gemms(&j, w, uper, mr, tc, 0, 36, buf + vm_floats(p, tcp));
            for (int64_t oc = 0; oc < OC; oc++) fout(&j, oc, t0, tc);
            if (s != ND_OK) {
#pragma omp atomic write
                st = s;
            }
        }
        return st;
    }
    const int64_t tcp = shared_slots(p), gws = nd_sgemm_ws(OC, tcp, C, 1) + 16;
    const wino_job j = job_at(p, out, x, wraw, bias, res, ws, tcp, o->nr);
    float *gw = ws + vm_floats(p, tcp);
#pragma omp parallel num_threads(T) if (T > 1)
    {
        int tid = 0;
#ifdef _OPENMP
        tid = omp_get_thread_num();
#endif
        for (int64_t t0 = 0; t0 < total; t0 += tcp) {
            const int64_t tc = total - t0 < tcp ? total - t0 : tcp;
#pragma omp for schedule(static)
            for (int64_t t = 0; t < tcp; t++)
                j.bad[t] = 0;
#pragma omp for schedule(dynamic, 1)
            for (int64_t c = 0; c < C; c++)
                fin(&j, c, t0, tc);
#pragma omp for schedule(dynamic, 1)
            for (int64_t xi = 0; xi < 36; xi++) {
                nd_status s = wino_gemms(&j, w, uper, mr, tc, xi, xi + 1, gw + tid * gws);
                if (s != ND_OK) {
#pragma omp atomic write
                    st = s;
                }
            }
#pragma omp for schedule(dynamic, 4)
            for (int64_t oc = 0; oc < OC; oc++)
                fout(&j, oc, t0, tc);
        }
    }
    return st;
}
