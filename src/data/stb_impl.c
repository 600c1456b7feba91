// The one translation unit that compiles the vendored stb libraries.
#define STB_IMAGE_IMPLEMENTATION
#define STBI_NO_HDR  // 8-bit images only
#define STB_IMAGE_WRITE_IMPLEMENTATION
#define STB_IMAGE_RESIZE_IMPLEMENTATION
#include "stb/stb_image.h"
#include "stb/stb_image_resize.h"
#include "stb/stb_image_write.h"
