// SPDX-License-Identifier: Apache-2.0
//! Finding what changed: the frame is compared with what a client was last sent, in
//! [`TILE`]x[`TILE`] tiles; runs of changed tiles in a tile row become one rectangle.

use super::rfb::Rect;

/// Tile edge in pixels.
pub const TILE: u32 = 64;

/// Clips `r` to a `width` x `height` framebuffer; None if nothing is left.
pub fn clip(r: Rect, width: u32, height: u32) -> Option<Rect> {
    let x0 = u32::from(r.x).min(width);
    let y0 = u32::from(r.y).min(height);
    let x1 = (u32::from(r.x) + u32::from(r.w)).min(width);
    let y1 = (u32::from(r.y) + u32::from(r.h)).min(height);
    (x1 > x0 && y1 > y0).then(|| Rect {
        x: x0 as u16,
        y: y0 as u16,
        w: (x1 - x0) as u16,
        h: (y1 - y0) as u16,
    })
}

/// Whether the pixels of `r` differ between two RGB images of the same `width`.
fn differs(old: &[u8], new: &[u8], width: u32, r: Rect) -> bool {
    let stride = width as usize * 3;
    (usize::from(r.y)..usize::from(r.y) + usize::from(r.h)).any(|y| {
        let a = y * stride + usize::from(r.x) * 3;
        let b = a + usize::from(r.w) * 3;
        old.get(a..b) != new.get(a..b)
    })
}

/// The rectangles of `region` (already clipped to the frame) whose pixels differ between
/// `old` and `new`, two RGB images `width` pixels wide (3 bytes per pixel, same size).
pub fn changed_rects(old: &[u8], new: &[u8], width: u32, region: Rect) -> Vec<Rect> {
    let mut out = Vec::new();
    let (x_end, y_end) =
        (u32::from(region.x) + u32::from(region.w), u32::from(region.y) + u32::from(region.h));
    let mut y = u32::from(region.y);
    while y < y_end {
        let h = (TILE - y % TILE).min(y_end - y);
        let mut run: Option<Rect> = None;
        let mut x = u32::from(region.x);
        while x < x_end {
            let w = (TILE - x % TILE).min(x_end - x);
            let tile = Rect { x: x as u16, y: y as u16, w: w as u16, h: h as u16 };
            if differs(old, new, width, tile) {
                match &mut run {
                    Some(r) => r.w += tile.w,
                    None => run = Some(tile),
                }
            } else if let Some(r) = run.take() {
                out.push(r);
            }
            x += w;
        }
        out.extend(run);
        y += h;
    }
    out
}

/// Copies rectangle `r` of `src` into `dst` (RGB images `width` pixels wide, same size).
pub fn copy_rect(dst: &mut [u8], src: &[u8], width: u32, r: Rect) {
    let stride = width as usize * 3;
    for y in usize::from(r.y)..usize::from(r.y) + usize::from(r.h) {
        let a = y * stride + usize::from(r.x) * 3;
        let b = a + usize::from(r.w) * 3;
        if let (Some(d), Some(s)) = (dst.get_mut(a..b), src.get(a..b)) {
            d.copy_from_slice(s);
        }
    }
}

/// `rgb` (`width` x `height`) cropped or padded with black to `w` x `h`: for a client that
/// cannot resize.
pub fn fit(rgb: &[u8], width: u32, height: u32, w: u32, h: u32) -> Vec<u8> {
    let mut out = vec![0u8; w as usize * h as usize * 3];
    let cols = width.min(w) as usize * 3;
    for y in 0..height.min(h) as usize {
        let src = y * width as usize * 3;
        let dst = y * w as usize * 3;
        if let Some(row) = rgb.get(src..src + cols) {
            out[dst..dst + cols].copy_from_slice(row);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn img(w: u32, h: u32) -> Vec<u8> {
        vec![0u8; (w * h * 3) as usize]
    }

    fn set(img: &mut [u8], w: u32, x: u32, y: u32) {
        img[((y * w + x) * 3) as usize] = 0xff;
    }

    const fn r(x: u16, y: u16, w: u16, h: u16) -> Rect {
        Rect { x, y, w, h }
    }

    #[test]
    fn clipping() {
        assert_eq!(clip(r(0, 0, 1000, 1000), 720, 400), Some(r(0, 0, 720, 400)));
        assert_eq!(clip(r(700, 390, 100, 100), 720, 400), Some(r(700, 390, 20, 10)));
        assert_eq!(clip(r(720, 0, 10, 10), 720, 400), None);
        assert_eq!(clip(r(0, 0, 0, 10), 720, 400), None);
        assert_eq!(clip(r(65535, 65535, 65535, 65535), 720, 400), None);
    }

    #[test]
    fn unchanged_frame_has_no_rects() {
        let a = img(200, 100);
        assert!(changed_rects(&a, &a, 200, r(0, 0, 200, 100)).is_empty());
    }

    #[test]
    fn one_pixel_marks_its_tile() {
        let a = img(200, 100);
        let mut b = a.clone();
        set(&mut b, 200, 70, 10);
        assert_eq!(changed_rects(&a, &b, 200, r(0, 0, 200, 100)), vec![r(64, 0, 64, 64)]);
        // The last tiles of a row and column are partial.
        let mut c = a.clone();
        set(&mut c, 200, 199, 99);
        assert_eq!(changed_rects(&a, &c, 200, r(0, 0, 200, 100)), vec![r(192, 64, 8, 36)]);
    }

    #[test]
    fn adjacent_tiles_merge_and_gaps_split() {
        let a = img(320, 64);
        let mut b = a.clone();
        for x in [0, 64, 200] {
            set(&mut b, 320, x, 5);
        }
        assert_eq!(changed_rects(&a, &b, 320, r(0, 0, 320, 64)), vec![r(0, 0, 128, 64), r(192, 0, 64, 64)]);
    }

    #[test]
    fn region_limits_the_search() {
        let a = img(200, 100);
        let mut b = a.clone();
        set(&mut b, 200, 10, 10);
        set(&mut b, 200, 150, 80);
        assert_eq!(changed_rects(&a, &b, 200, r(100, 50, 100, 50)), vec![r(128, 64, 64, 36)]);
        // A region that does not start on a tile boundary gives tiles cut at its edge.
        assert_eq!(changed_rects(&a, &b, 200, r(5, 5, 10, 10)), vec![r(5, 5, 10, 10)]);
    }

    #[test]
    fn copy_and_fit() {
        let mut a = img(4, 4);
        let mut b = img(4, 4);
        set(&mut b, 4, 1, 1);
        set(&mut b, 4, 3, 3);
        copy_rect(&mut a, &b, 4, r(0, 0, 2, 2));
        assert!(changed_rects(&a, &b, 4, r(0, 0, 2, 2)).is_empty());
        assert_eq!(changed_rects(&a, &b, 4, r(0, 0, 4, 4)).len(), 1);
        let f = fit(&b, 4, 4, 2, 5);
        assert_eq!(f.len(), 2 * 5 * 3);
        assert_eq!(f[(2 + 1) * 3], 0xff);
        assert!(f[4 * 2 * 3..].iter().all(|&v| v == 0));
        let g = fit(&b, 4, 4, 6, 2);
        assert_eq!(g[(6 + 1) * 3], 0xff);
    }
}
