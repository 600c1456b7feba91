// What stb_impl.c exports besides the stb headers' own functions: the text
// of stb_easy_font (its functions are static), for the previews' class names.
#ifndef IGPT_STB_IMPL_H
#define IGPT_STB_IMPL_H

// The width of `text` in font pixels (letters are 7 tall above the baseline).
int easy_font_width(const char *text);
// The filled rectangles that draw `text` with its top-left corner at (0, 0),
// in font pixels: rects[4 q ..] = left, top, right, bottom (exclusive) of
// rectangle q. Returns how many were written, at most max_rects.
int easy_font_rectangles(const char *text, float *rects, int max_rects);

#endif
