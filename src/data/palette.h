// The color palette: k-means over RGB pixels (iGPT quantizes every pixel to
// one of 512 cluster centers, so an image becomes a sequence of color ids).
#ifndef IGPT_PALETTE_H
#define IGPT_PALETTE_H

#include <stdbool.h>
#include <stdint.h>

#define IGPT_MIN_COLORS 2
#define IGPT_MAX_COLORS 4096
#define IGPT_DEFAULT_COLORS 512

// Palette entries are 8-bit RGB. Quantization uses exactly these rounded
// values, so a saved palette reproduces the tokens bit for bit. A palette
// imported with a released model keeps its float cluster centers instead
// (rounding them would change the color id of a few percent of the pixels):
// quantization then uses the centers, and rgb is only their rounding, for
// pictures. Zero-initialised or from palette_alloc: no centers, no exact_crc.
typedef struct {
    int colors;
    uint8_t *rgb;        // colors x 3
    float *centers;      // NULL, or colors x 3 exact cluster centers in pixel units (0..255, R G B):
                         // quantization uses them instead of rgb (rgb is then their rounding, for display)
    uint32_t exact_crc;  // palette_crc of a palette with centers, kept by files that hold only the
                         // 8-bit colors (a prepared split, a .igpz); 0: none
} Palette;

typedef struct {
    int k;
    int max_iters;  // Lloyd iterations after k-means++ initialisation
    double tol;     // stop when the mean squared error improves by less than this fraction
    uint64_t seed;
    int threads;
    bool show_progress;
} KmeansOptions;

typedef struct {
    int iters;
    bool converged;
    double mse;  // mean squared distance of the points to their center (sum over R, G, B)
    int reseeded_empty;
} KmeansResult;

// Lloyd's k-means with k-means++ seeding on n points of dimension 3.
// Deterministic for a given seed, whatever the thread count: work is split
// into fixed chunks whose partial sums are added in chunk order.
void kmeans_fit(const float *points, int64_t n, const KmeansOptions *opt, float *centers, KmeansResult *result);

// Fits a palette on a seeded uniform sample of `sample` pixels (all pixels
// when sample <= 0 or larger than the count), rounds the centers to 8 bits
// and sorts them by luma, so the swatch reads dark to light.
void palette_fit(const uint8_t *rgb_pixels, int64_t num_pixels, int64_t sample, const KmeansOptions *opt, Palette *out,
                 KmeansResult *result);

// tokens[i] = index of the palette entry nearest to pixel i by squared RGB
// distance (exact integer arithmetic, ties to the lower index). With centers:
// nearest center by squared distance in double, summed R, G, B in that order,
// ties to the lower index. Returns the summed squared error over all pixels
// and channels, to the 8-bit colors (rgb) the tokens stand for. Dies on a
// palette that holds only the rounding of exact centers (exact_crc, no centers).
uint64_t palette_quantize(const Palette *pal, const uint8_t *rgb_pixels, int64_t num_pixels, uint16_t *tokens,
                          int threads);

// PSNR in dB of a quantization with the summed squared error over `values`
// channel values (255 peak).
double psnr_db(uint64_t sq_error, int64_t values);

void palette_alloc(Palette *pal, int colors);
void palette_free(Palette *pal);
void palette_copy(const Palette *src, Palette *dst);
// Copies colors x 3 exact centers (pixel units: each 0 or a normal float in
// (0, 255], else it dies) into pal (of palette_alloc), sets rgb to their
// rounding (roundf) and clears exact_crc.
void palette_set_centers(Palette *pal, const float *centers);
// The palette's identity, what a checkpoint records of the palette its model
// was trained with, so that tokens are read with their colors: exact_crc when
// set; else CRC-32 of the colors (R, G, B bytes), continued over the centers'
// bytes (little-endian float32) when there are centers.
uint32_t palette_crc(const Palette *pal);

// Palette file: see docs/formats.md. (palette_from_file in dataset.h also
// takes the palette of a prepared split.)
void palette_save(const Palette *pal, const char *path);
void palette_load(const char *path, Palette *pal);

#endif
