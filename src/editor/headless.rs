//! Running an editor without a window or a host: a plain `egui::Context` fed with made-up
//! input, and a stand-in for the host's side of parameter changes that records them. The
//! screenshot tests, the interaction tests and the editor benchmark drive the same drawing code
//! as the plugin window through this.

use super::widgets;
use egui::epaint::textures::TexturesDelta;
use egui::epaint::ClippedShape;
use egui::{Event, FullOutput, Modifiers, PointerButton, Pos2, RawInput, Rect, Shape, Ui, Vec2};
use nice_plug::context::gui::GuiContext;
use nice_plug::prelude::{GuiContextInner, ParamPtr, ParamSetter, PluginApi, PluginState};
use std::sync::{Arc, Mutex};

/// A parameter change as the host would receive it from the editor.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum ParamChange {
    /// A gesture starts.
    Begin(ParamPtr),
    /// A new normalized value.
    Set(ParamPtr, f32),
    /// A gesture ends.
    End(ParamPtr),
}

/// The host's side of an editor, for tests: records every parameter change and applies none.
#[derive(Debug, Default)]
pub struct Recorder {
    /// Changes so far, oldest first (GUI thread writes, the test reads).
    pub changes: Mutex<Vec<ParamChange>>,
}

impl Recorder {
    /// Adds a change.
    fn record(&self, c: ParamChange) {
        match self.changes.lock() {
            Ok(mut v) => v.push(c),
            Err(p) => p.into_inner().push(c),
        }
    }

    /// Takes the changes recorded so far.
    pub fn take(&self) -> Vec<ParamChange> {
        match self.changes.lock() {
            Ok(mut v) => std::mem::take(&mut *v),
            Err(p) => std::mem::take(&mut *p.into_inner()),
        }
    }
}

impl GuiContextInner for Recorder {
    fn plugin_api(&self) -> PluginApi {
        PluginApi::Clap
    }

    unsafe fn raw_begin_set_parameter(&self, param: ParamPtr) {
        self.record(ParamChange::Begin(param));
    }

    unsafe fn raw_set_parameter_normalized(&self, param: ParamPtr, normalized: f32) {
        self.record(ParamChange::Set(param, normalized));
    }

    unsafe fn raw_end_set_parameter(&self, param: ParamPtr) {
        self.record(ParamChange::End(param));
    }

    fn get_state(&self) -> PluginState {
        PluginState {
            version: String::new(),
            params: Default::default(),
            fields: Default::default(),
        }
    }

    fn set_state(&self, _state: PluginState) {}

    fn request_restart(&self) {}
}

/// An editor's egui context with no window: frames are run by hand, at 60 per second of
/// made-up time.
pub struct Headless {
    /// The context, styled like the plugin window's.
    pub ctx: egui::Context,
    /// Window size, points.
    pub size: Vec2,
    /// Pixels per point (2 for a high-density screen).
    pub pixels_per_point: f32,
    /// Made-up time of the next frame, s.
    time: f64,
    /// Input for the next frame.
    events: Vec<Event>,
    /// Where the pointer is.
    pointer: Option<Pos2>,
    /// Records parameter changes.
    pub recorder: Arc<Recorder>,
    /// The context the drawing code gets its `ParamSetter` from.
    gui: GuiContext,
    /// Texture changes of the frames run so far, not yet taken by a painter.
    textures: TexturesDelta,
}

impl Drop for Headless {
    fn drop(&mut self) {
        // Nothing paints them; egui asks that this be said explicitly.
        self.textures.clear();
    }
}

impl Headless {
    /// A context for a window of `size` points.
    pub fn new(size: Vec2, pixels_per_point: f32) -> Self {
        let ctx = egui::Context::default();
        widgets::apply_style(&ctx);
        let recorder = Arc::new(Recorder::default());
        Self {
            ctx,
            size,
            pixels_per_point,
            time: 0.0,
            events: Vec::new(),
            pointer: None,
            gui: GuiContext::new(recorder.clone()),
            recorder,
            textures: TexturesDelta::default(),
        }
    }

    /// Runs one frame of `ui` with the input queued so far. Its texture changes are kept for
    /// [`Headless::take_textures`].
    pub fn frame(&mut self, mut ui: impl FnMut(&mut Ui, &ParamSetter)) -> FullOutput {
        let mut input = RawInput {
            screen_rect: Some(Rect::from_min_size(Pos2::ZERO, self.size)),
            time: Some(self.time),
            predicted_dt: 1.0 / 60.0,
            focused: true,
            events: std::mem::take(&mut self.events),
            ..Default::default()
        };
        input
            .viewports
            .entry(egui::ViewportId::ROOT)
            .or_default()
            .native_pixels_per_point = Some(self.pixels_per_point);
        self.time += 1.0 / 60.0;
        let setter = self.gui.param_setter();
        let mut out = self.ctx.run_ui(input, |u| ui(u, &setter));
        self.textures
            .append(std::mem::take(&mut out.textures_delta));
        out
    }

    /// The texture changes of every frame since the last call, in order: what a painter must
    /// apply before drawing the latest frame.
    pub fn take_textures(&mut self) -> TexturesDelta {
        std::mem::take(&mut self.textures)
    }

    /// Turns a frame's shapes into triangles, as the window would before drawing.
    pub fn tessellate(&self, out: &mut FullOutput) -> Vec<egui::ClippedPrimitive> {
        let shapes = std::mem::take(&mut out.shapes);
        self.ctx.tessellate(shapes, out.pixels_per_point)
    }

    /// Queues a click at `pos`: run two frames to see it (press, then release).
    pub fn click(&mut self, pos: Pos2) {
        self.pointer = Some(pos);
        self.events.push(Event::PointerMoved(pos));
        self.events.push(Event::PointerButton {
            pos,
            button: PointerButton::Primary,
            pressed: true,
            modifiers: Modifiers::NONE,
        });
    }

    /// Queues the release of a click (next frame after [`Headless::click`]).
    pub fn release(&mut self) {
        if let Some(pos) = self.pointer {
            self.events.push(Event::PointerButton {
                pos,
                button: PointerButton::Primary,
                pressed: false,
                modifiers: Modifiers::NONE,
            });
        }
    }

    /// Queues typed text.
    pub fn type_text(&mut self, text: &str) {
        self.events.push(Event::Text(text.into()));
    }

    /// Queues a key press and release.
    pub fn key(&mut self, key: egui::Key) {
        for pressed in [true, false] {
            self.events.push(Event::Key {
                key,
                physical_key: None,
                pressed,
                repeat: false,
                modifiers: Modifiers::NONE,
            });
        }
    }
}

/// Where a text is painted in a frame's shapes (the first match, exact text).
pub fn find_text(out: &FullOutput, text: &str) -> Option<Rect> {
    fn find(shape: &Shape, text: &str) -> Option<Rect> {
        match shape {
            Shape::Text(t) if t.galley.text() == text => {
                Some(t.galley.rect.translate(t.pos.to_vec2()))
            }
            Shape::Vec(v) => v.iter().find_map(|s| find(s, text)),
            _ => None,
        }
    }
    out.shapes
        .iter()
        .find_map(|ClippedShape { shape, .. }| find(shape, text))
}

/// Every text painted in a frame, in paint order.
pub fn texts(out: &FullOutput) -> Vec<String> {
    fn collect(shape: &Shape, v: &mut Vec<String>) {
        match shape {
            Shape::Text(t) => v.push(t.galley.text().to_string()),
            Shape::Vec(s) => s.iter().for_each(|s| collect(s, v)),
            _ => {}
        }
    }
    let mut v = Vec::new();
    for s in &out.shapes {
        collect(&s.shape, &mut v);
    }
    v
}

/// Where texts are painted in a frame: each non-blank text with its rectangle, cut to what is
/// visible of it (its clip rectangle and the window, `screen`); texts not visible at all (a
/// scrolled-away row) are left out.
pub fn visible_texts(out: &FullOutput, screen: Rect) -> Vec<(String, Rect)> {
    fn walk(shape: &Shape, clip: Rect, v: &mut Vec<(String, Rect)>) {
        match shape {
            Shape::Text(t) if !t.galley.text().trim().is_empty() => {
                let r = t.galley.rect.translate(t.pos.to_vec2()).intersect(clip);
                if r.is_positive() {
                    v.push((t.galley.text().to_string(), r));
                }
            }
            Shape::Vec(s) => s.iter().for_each(|s| walk(s, clip, v)),
            _ => {}
        }
    }
    let mut v = Vec::new();
    for s in &out.shapes {
        walk(&s.shape, s.clip_rect.intersect(screen), &mut v);
    }
    v
}

/// Pairs of texts painted over each other: their visible rectangles overlap by more than
/// `tolerance` points both ways. (A text's rectangle is its whole line height, so the lines of
/// tightly stacked rows touch: a small tolerance, a point or so, lets them.)
pub fn overlapping_texts(out: &FullOutput, screen: Rect, tolerance: f32) -> Vec<(String, String)> {
    let texts = visible_texts(out, screen);
    let mut v = Vec::new();
    for (i, (a, ra)) in texts.iter().enumerate() {
        for (b, rb) in &texts[i + 1..] {
            let o = ra.intersect(*rb);
            if o.width() > tolerance && o.height() > tolerance {
                v.push((a.clone(), b.clone()));
            }
        }
    }
    v
}

/// Shapes of any kind that are cut: not inside their clip rectangle or not inside the window
/// (`screen`), by more than `tolerance` points (anti-aliasing and strokes on an edge). Each is
/// described in words, with its rectangle, for the test's message.
pub fn cut_shapes(out: &FullOutput, screen: Rect, tolerance: f32) -> Vec<String> {
    fn walk(shape: &Shape, clip: Rect, tolerance: f32, v: &mut Vec<String>) {
        match shape {
            Shape::Vec(s) => s.iter().for_each(|s| walk(s, clip, tolerance, v)),
            Shape::Noop => {}
            s => {
                let r = s.visual_bounding_rect();
                if r.is_positive() && !clip.expand(tolerance).contains_rect(r) {
                    let what = match s {
                        Shape::Text(t) => format!("text {:?}", t.galley.text()),
                        Shape::Rect(_) => "a rectangle".into(),
                        Shape::Circle(_) => "a circle".into(),
                        Shape::LineSegment { .. } | Shape::Path(_) => "a line".into(),
                        Shape::Mesh(_) => "a mesh".into(),
                        _ => "a shape".into(),
                    };
                    v.push(format!("{what} at {r:?}, clip {clip:?}"));
                }
            }
        }
    }
    let mut v = Vec::new();
    for s in &out.shapes {
        walk(&s.shape, s.clip_rect.intersect(screen), tolerance, &mut v);
    }
    v
}

/// Texts that do not fit where they are painted: cut off by their clip rectangle or by the
/// window (`screen`). Text elided with "…" on purpose fits and is not listed.
pub fn clipped_texts(out: &FullOutput, screen: Rect) -> Vec<String> {
    fn walk(shape: &Shape, clip: Rect, v: &mut Vec<String>) {
        match shape {
            Shape::Text(t) if !t.galley.text().trim().is_empty() => {
                let r = t.galley.rect.translate(t.pos.to_vec2());
                if !clip.expand(0.5).contains_rect(r) {
                    v.push(t.galley.text().to_string());
                }
            }
            Shape::Vec(s) => s.iter().for_each(|s| walk(s, clip, v)),
            _ => {}
        }
    }
    let mut v = Vec::new();
    for s in &out.shapes {
        walk(&s.shape, s.clip_rect.intersect(screen), &mut v);
    }
    v
}
