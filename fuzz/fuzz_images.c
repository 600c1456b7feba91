// Fuzzes the image-folder reader (imagefolder_load: decode, size checks,
// resize) on a folder of one class holding one image. The input's first byte
// chooses the file's extension (low nibble) and the resolution it is resized
// to (high bits); the rest is the file.
#include <stdio.h>
#include <sys/stat.h>
#include <unistd.h>

#include "data/images.h"
#include "fuzz_common.h"

static const char *const extensions[] = {"png", "jpg", "jpeg", "bmp", "gif", "tga", "psd", "pnm", "ppm", "pgm", "pic"};
static const int resolutions[] = {2, 8, 16, 32};

typedef struct {
    const char *root;
    int resolution;
} FolderCall;

static void read_folder(void *arg) {
    const FolderCall *call = arg;
    ImageSet set;
    FolderStats stats;
    imagefolder_load(call->root, call->resolution, 1, &set, &stats);
    imageset_free(&set);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 1) return 0;
    static char root[512], class_dir[600], image[700];
    if (!root[0]) {
        snprintf(root, sizeof root, "%s/images", fuzz_scratch_dir());
        snprintf(class_dir, sizeof class_dir, "%s/class", root);
        mkdir(root, 0700);
        mkdir(class_dir, 0700);
    }
    if (image[0]) unlink(image);  // one image in the folder
    snprintf(image, sizeof image, "%s/input.%s", class_dir, extensions[(data[0] & 15) % 11]);
    FILE *f = fopen(image, "wb");
    if (!f || fwrite(data + 1, 1, size - 1, f) != size - 1 || fclose(f) != 0) {
        perror(image);
        return 0;
    }
    FolderCall call = {root, resolutions[(data[0] >> 4) & 3]};
    fuzz_run(read_folder, &call);
    return 0;
}
