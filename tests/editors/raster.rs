//! A small CPU rasterizer for egui's output, so the screenshot tests need no GPU, no window
//! system and no system library: egui's tessellator already turns everything into triangles
//! with anti-aliased edges (feathering), so drawing them is point sampling each triangle at
//! pixel centres, modulating its vertex colours with its texture (the font atlas), and blending
//! premultiplied colours in gamma space, as egui's OpenGL painter does.

use egui::epaint::textures::TexturesDelta;
use egui::epaint::{ImageData, Primitive, TextureId, Vertex};
use egui::{ClippedPrimitive, Color32, TextureFilter};
use std::collections::HashMap;
use std::path::Path;

/// A texture: premultiplied RGBA, as egui hands it over.
struct Texture {
    /// Width, texels.
    w: usize,
    /// Height, texels.
    h: usize,
    /// Texels, row by row.
    data: Vec<Color32>,
    /// Bilinear (true) or nearest sampling when magnified.
    linear: bool,
}

impl Texture {
    /// The texel at (x, y), clamped to the edges, as premultiplied floats.
    fn texel(&self, x: i64, y: i64) -> [f32; 4] {
        let x = x.clamp(0, self.w as i64 - 1) as usize;
        let y = y.clamp(0, self.h as i64 - 1) as usize;
        let c = self.data[y * self.w + x];
        [
            f32::from(c.r()) / 255.0,
            f32::from(c.g()) / 255.0,
            f32::from(c.b()) / 255.0,
            f32::from(c.a()) / 255.0,
        ]
    }

    /// The colour at normalized coordinates (u, v).
    fn sample(&self, u: f32, v: f32) -> [f32; 4] {
        let x = u * self.w as f32 - 0.5;
        let y = v * self.h as f32 - 0.5;
        if !self.linear {
            return self.texel(x.round() as i64, y.round() as i64);
        }
        let (x0, y0) = (x.floor(), y.floor());
        let (fx, fy) = (x - x0, y - y0);
        let (x0, y0) = (x0 as i64, y0 as i64);
        let a = self.texel(x0, y0);
        let b = self.texel(x0 + 1, y0);
        let c = self.texel(x0, y0 + 1);
        let d = self.texel(x0 + 1, y0 + 1);
        let mut out = [0.0; 4];
        for i in 0..4 {
            let top = a[i] + (b[i] - a[i]) * fx;
            let bottom = c[i] + (d[i] - c[i]) * fx;
            out[i] = top + (bottom - top) * fy;
        }
        out
    }
}

/// The textures egui has asked for so far.
#[derive(Default)]
pub struct Textures {
    /// By id.
    map: HashMap<TextureId, Texture>,
}

impl Textures {
    /// Applies texture changes (new textures, patches, frees), in order.
    pub fn apply(&mut self, mut delta: TexturesDelta) {
        for (id, d) in delta
            .set
            .iter()
            .flat_map(|(id, ds)| ds.iter().map(move |d| (id, d)))
        {
            let ImageData::Color(img) = &d.image;
            let (w, h) = (img.size[0], img.size[1]);
            let linear = d.options.magnification == TextureFilter::Linear;
            match d.pos {
                None => {
                    self.map.insert(
                        *id,
                        Texture {
                            w,
                            h,
                            data: img.pixels.clone(),
                            linear,
                        },
                    );
                }
                Some([x0, y0]) => {
                    let t = self.map.get_mut(id).expect("a patch to a known texture");
                    for y in 0..h {
                        let dst = (y0 + y) * t.w + x0;
                        t.data[dst..dst + w].copy_from_slice(&img.pixels[y * w..(y + 1) * w]);
                    }
                }
            }
        }
        for id in &delta.free {
            self.map.remove(id);
        }
        delta.clear();
    }
}

/// An RGBA image being drawn, premultiplied floats in gamma space.
pub struct Canvas {
    /// Width, pixels.
    pub w: usize,
    /// Height, pixels.
    pub h: usize,
    /// Pixels, row by row.
    px: Vec<[f32; 4]>,
}

impl Canvas {
    /// A canvas filled with an opaque colour.
    pub fn new(w: usize, h: usize, bg: Color32) -> Self {
        let c = [
            f32::from(bg.r()) / 255.0,
            f32::from(bg.g()) / 255.0,
            f32::from(bg.b()) / 255.0,
            1.0,
        ];
        Self {
            w,
            h,
            px: vec![c; w * h],
        }
    }

    /// Draws a frame's triangles, `ppp` pixels per point.
    pub fn draw(&mut self, textures: &Textures, prims: &[ClippedPrimitive], ppp: f32) {
        for p in prims {
            let Primitive::Mesh(mesh) = &p.primitive else {
                continue;
            };
            let Some(tex) = textures.map.get(&mesh.texture_id) else {
                panic!("mesh uses unknown texture {:?}", mesh.texture_id);
            };
            // Scissor rectangle in whole pixels, like the GPU painter's.
            let cx0 = ((p.clip_rect.min.x * ppp).round().max(0.0) as usize).min(self.w);
            let cy0 = ((p.clip_rect.min.y * ppp).round().max(0.0) as usize).min(self.h);
            let cx1 = ((p.clip_rect.max.x * ppp).round().max(0.0) as usize).min(self.w);
            let cy1 = ((p.clip_rect.max.y * ppp).round().max(0.0) as usize).min(self.h);
            if cx0 >= cx1 || cy0 >= cy1 {
                continue;
            }
            for tri in mesh.indices.chunks_exact(3) {
                let v = [
                    &mesh.vertices[tri[0] as usize],
                    &mesh.vertices[tri[1] as usize],
                    &mesh.vertices[tri[2] as usize],
                ];
                self.triangle(tex, v, ppp, (cx0, cy0, cx1, cy1));
            }
        }
    }

    /// Draws one triangle inside the scissor rectangle `clip` (pixels, half-open).
    fn triangle(
        &mut self,
        tex: &Texture,
        v: [&Vertex; 3],
        ppp: f32,
        clip: (usize, usize, usize, usize),
    ) {
        let p: [(f32, f32); 3] = v.map(|v| (v.pos.x * ppp, v.pos.y * ppp));
        let area = (p[1].0 - p[0].0) * (p[2].1 - p[0].1) - (p[2].0 - p[0].0) * (p[1].1 - p[0].1);
        if area.abs() < 1e-12 {
            return;
        }
        let min_x = p.iter().map(|q| q.0).fold(f32::INFINITY, f32::min);
        let max_x = p.iter().map(|q| q.0).fold(f32::NEG_INFINITY, f32::max);
        let min_y = p.iter().map(|q| q.1).fold(f32::INFINITY, f32::min);
        let max_y = p.iter().map(|q| q.1).fold(f32::NEG_INFINITY, f32::max);
        let x0 = (min_x.floor().max(clip.0 as f32)) as usize;
        let x1 = (max_x.ceil().min(clip.2 as f32)) as usize;
        let y0 = (min_y.floor().max(clip.1 as f32)) as usize;
        let y1 = (max_y.ceil().min(clip.3 as f32)) as usize;
        let colors: [[f32; 4]; 3] = v.map(|v| {
            let c = v.color;
            [
                f32::from(c.r()) / 255.0,
                f32::from(c.g()) / 255.0,
                f32::from(c.b()) / 255.0,
                f32::from(c.a()) / 255.0,
            ]
        });
        let edge = |a: (f32, f32), b: (f32, f32), x: f32, y: f32| {
            (b.0 - a.0) * (y - a.1) - (b.1 - a.1) * (x - a.0)
        };
        for y in y0..y1 {
            let py = y as f32 + 0.5;
            for x in x0..x1 {
                let px = x as f32 + 0.5;
                // Barycentric weights of the pixel centre.
                let w0 = edge(p[1], p[2], px, py) / area;
                let w1 = edge(p[2], p[0], px, py) / area;
                let w2 = 1.0 - w0 - w1;
                if w0 < 0.0 || w1 < 0.0 || w2 < 0.0 {
                    continue;
                }
                let u = w0 * v[0].uv.x + w1 * v[1].uv.x + w2 * v[2].uv.x;
                let t = w0 * v[0].uv.y + w1 * v[1].uv.y + w2 * v[2].uv.y;
                let texel = tex.sample(u, t);
                let dst = &mut self.px[y * self.w + x];
                let mut src = [0.0; 4];
                for i in 0..4 {
                    let c = w0 * colors[0][i] + w1 * colors[1][i] + w2 * colors[2][i];
                    src[i] = c * texel[i];
                }
                let keep = 1.0 - src[3];
                for i in 0..4 {
                    dst[i] = src[i] + dst[i] * keep;
                }
            }
        }
    }

    /// The image as opaque 8-bit RGBA rows.
    pub fn rgba8(&self) -> Vec<u8> {
        self.px
            .iter()
            .flat_map(|c| {
                [
                    (c[0].clamp(0.0, 1.0) * 255.0).round() as u8,
                    (c[1].clamp(0.0, 1.0) * 255.0).round() as u8,
                    (c[2].clamp(0.0, 1.0) * 255.0).round() as u8,
                    255,
                ]
            })
            .collect()
    }

    /// Writes the image as a PNG file.
    pub fn save_png(&self, path: &Path) -> std::io::Result<()> {
        let file = std::fs::File::create(path)?;
        let mut enc =
            png::Encoder::new(std::io::BufWriter::new(file), self.w as u32, self.h as u32);
        enc.set_color(png::ColorType::Rgba);
        enc.set_depth(png::BitDepth::Eight);
        enc.set_compression(png::Compression::High);
        let mut w = enc.write_header().map_err(std::io::Error::other)?;
        w.write_image_data(&self.rgba8())
            .map_err(std::io::Error::other)?;
        Ok(())
    }
}
