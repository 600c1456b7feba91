// Probe features: for every image, the mean over positions of each layer's
// normalised input (docs/model.md), computed once and cached on disk.
#ifndef IGPT_PROBE_FEATURES_H
#define IGPT_PROBE_FEATURES_H

#include <stdint.h>

#include "data/dataset.h"
#include "model/backend.h"

#define IGPT_FEATURES_MAGIC "IGPTFEAT"
#define IGPT_FEATURES_VERSION 1u

typedef struct {
    int64_t count;
    int layers;  // L + 1 (pixels baseline: 1)
    int dim;     // C (pixels baseline: H x W x 3)
    int num_classes;
    uint32_t model_crc;  // CRC of the parameters the features came from (0: raw pixels)
    uint32_t data_crc;   // CRC of the images' tokens and labels
    uint64_t step;       // checkpoint step
    double gen_loss;     // mean next-pixel loss of the model on these images (nats/token), NaN if not computed
    uint16_t *labels;    // count
    float *values;       // count x layers x dim
} FeatureSet;

uint32_t images_crc(const TokenDataset *data, const int64_t *indices, int64_t count);
// Runs the model over the chosen images in batches of `batch`; also records
// its generative loss on them.
void extract_features(Backend *m, const TokenDataset *data, const int64_t *indices, int64_t count, int batch,
                      uint32_t model_crc, uint64_t step, FeatureSet *out);
// The palette colors of each image's pixels as features (the raw-pixel baseline).
void pixel_features(const TokenDataset *data, const int64_t *indices, int64_t count, FeatureSet *out);

void features_save(const char *path, const FeatureSet *fs);
// Reads and checks a feature file; dies on corruption.
void features_load(const char *path, FeatureSet *fs);
void features_free(FeatureSet *fs);

#endif
