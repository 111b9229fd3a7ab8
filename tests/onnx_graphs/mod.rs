//! ONNX models written at test time, byte by byte: a tiny protobuf encoder and the graphs
//! the hostile-input tests need (endless loop, memory bomb, huge metadata). Nothing large
//! is committed; nothing outside Rust is needed to make them.
//!
//! Field numbers are those of `onnx.proto` (ModelProto, GraphProto, NodeProto, …).
#![allow(dead_code)]

/// ONNX element types (`TensorProto.DataType`).
pub const FLOAT: i64 = 1;
pub const INT64: i64 = 7;
pub const BOOL: i64 = 9;

/// A protobuf message under construction.
#[derive(Clone, Default)]
pub struct Msg(pub Vec<u8>);

fn varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

impl Msg {
    pub fn new() -> Self {
        Self::default()
    }

    fn key(&mut self, field: u32, wire: u8) {
        varint(&mut self.0, (u64::from(field) << 3) | u64::from(wire));
    }

    /// A varint field (int32, int64, enum, bool).
    pub fn int(mut self, field: u32, v: i64) -> Self {
        self.key(field, 0);
        varint(&mut self.0, v as u64);
        self
    }

    /// A length-delimited field (bytes, string, message, packed repeated).
    pub fn bytes(mut self, field: u32, b: &[u8]) -> Self {
        self.key(field, 2);
        varint(&mut self.0, b.len() as u64);
        self.0.extend_from_slice(b);
        self
    }

    pub fn str(self, field: u32, s: &str) -> Self {
        self.bytes(field, s.as_bytes())
    }

    pub fn msg(self, field: u32, m: Msg) -> Self {
        self.bytes(field, &m.0)
    }

    pub fn packed_i64(self, field: u32, vs: &[i64]) -> Self {
        let mut body = Vec::new();
        for &v in vs {
            varint(&mut body, v as u64);
        }
        self.bytes(field, &body)
    }

    pub fn packed_f32(self, field: u32, vs: &[f32]) -> Self {
        let body: Vec<u8> = vs.iter().flat_map(|v| v.to_le_bytes()).collect();
        self.bytes(field, &body)
    }
}

/// A dimension of a declared shape.
#[derive(Clone, Copy)]
pub enum D {
    Fixed(i64),
    Named(&'static str),
}

/// `ValueInfoProto`: a named tensor of `elem` with `dims` (rank 0 for `&[]`).
pub fn value(name: &str, elem: i64, dims: &[D]) -> Msg {
    let mut shape = Msg::new();
    for d in dims {
        let dim = match d {
            D::Fixed(n) => Msg::new().int(1, *n),
            D::Named(s) => Msg::new().str(2, s),
        };
        shape = shape.msg(1, dim);
    }
    let tensor_type = Msg::new().int(1, elem).msg(2, shape);
    Msg::new()
        .str(1, name)
        .msg(2, Msg::new().msg(1, tensor_type))
}

/// `TensorProto` of f32.
pub fn tensor_f32(name: &str, dims: &[i64], data: &[f32]) -> Msg {
    Msg::new()
        .packed_i64(1, dims)
        .int(2, FLOAT)
        .packed_f32(4, data)
        .str(8, name)
}

/// `TensorProto` of i64.
pub fn tensor_i64(name: &str, dims: &[i64], data: &[i64]) -> Msg {
    Msg::new()
        .packed_i64(1, dims)
        .int(2, INT64)
        .packed_i64(7, data)
        .str(8, name)
}

/// `TensorProto` of bool (stored as int32_data).
pub fn tensor_bool(name: &str, value: bool) -> Msg {
    Msg::new()
        .int(2, BOOL)
        .packed_i64(5, &[i64::from(value)])
        .str(8, name)
}

/// Attributes of a node.
pub enum Attr {
    Int(&'static str, i64),
    Ints(&'static str, Vec<i64>),
    Tensor(&'static str, Msg),
    Graph(&'static str, Msg),
}

fn attribute(a: Attr) -> Msg {
    // AttributeProto: name 1, i 3, t 5, g 6, ints 8, type 20.
    match a {
        Attr::Int(n, v) => Msg::new().str(1, n).int(3, v).int(20, 2),
        Attr::Ints(n, vs) => {
            let mut m = Msg::new().str(1, n);
            for v in vs {
                m = m.int(8, v);
            }
            m.int(20, 7)
        }
        Attr::Tensor(n, t) => Msg::new().str(1, n).msg(5, t).int(20, 4),
        Attr::Graph(n, g) => Msg::new().str(1, n).msg(6, g).int(20, 5),
    }
}

/// `NodeProto`.
pub fn node(op: &str, inputs: &[&str], outputs: &[&str], attrs: Vec<Attr>) -> Msg {
    let mut m = Msg::new();
    for i in inputs {
        m = m.str(1, i);
    }
    for o in outputs {
        m = m.str(2, o);
    }
    m = m.str(4, op);
    for a in attrs {
        m = m.msg(5, attribute(a));
    }
    m
}

/// `GraphProto`.
pub fn graph(name: &str, nodes: Vec<Msg>, inits: Vec<Msg>, ins: Vec<Msg>, outs: Vec<Msg>) -> Msg {
    let mut g = Msg::new();
    for n in nodes {
        g = g.msg(1, n);
    }
    g = g.str(2, name);
    for t in inits {
        g = g.msg(5, t);
    }
    for i in ins {
        g = g.msg(11, i);
    }
    for o in outs {
        g = g.msg(12, o);
    }
    g
}

/// `ModelProto` bytes: IR 8, opset 17, with `metadata` as `metadata_props`.
pub fn model(graph: Msg, metadata: &[(String, String)]) -> Vec<u8> {
    let mut m = Msg::new()
        .int(1, 8)
        .str(2, "bluegreen-tests")
        .msg(7, graph)
        .msg(8, Msg::new().str(1, "").int(2, 17));
    for (k, v) in metadata {
        m = m.msg(14, Msg::new().str(1, k).str(2, v));
    }
    m.0
}

/// The digits models' interface: `input` f32[batch, 64] → `label` i64[batch],
/// `probabilities` f32[batch, 10]; `body` turns `input` into `features` f32[batch, 64]
/// (plus its own initializers), then a fixed linear layer and softmax score it.
fn classifier(mut nodes: Vec<Msg>, mut inits: Vec<Msg>, metadata: &[(String, String)]) -> Vec<u8> {
    let weights: Vec<f32> = (0..64 * 10)
        .map(|i| ((i % 7) as f32 - 3.0) * 0.01)
        .collect();
    inits.push(tensor_f32("W", &[64, 10], &weights));
    nodes.push(node("MatMul", &["features", "W"], &["logits"], vec![]));
    nodes.push(node(
        "Softmax",
        &["logits"],
        &["probabilities"],
        vec![Attr::Int("axis", 1)],
    ));
    nodes.push(node(
        "ArgMax",
        &["probabilities"],
        &["label"],
        vec![Attr::Int("axis", 1), Attr::Int("keepdims", 0)],
    ));
    let g = graph(
        "classifier",
        nodes,
        inits,
        vec![value("input", FLOAT, &[D::Named("batch"), D::Fixed(64)])],
        vec![
            value("label", INT64, &[D::Named("batch")]),
            value("probabilities", FLOAT, &[D::Named("batch"), D::Fixed(10)]),
        ],
    );
    model(g, metadata)
}

/// A well-behaved classifier (its answers are not the digits models').
pub fn plain_classifier(metadata: &[(String, String)]) -> Vec<u8> {
    classifier(
        vec![node("Identity", &["input"], &["features"], vec![])],
        vec![],
        metadata,
    )
}

/// A classifier whose every call runs a `Loop` with no trip count and a condition that
/// stays true: it never returns, burning one core.
pub fn endless_loop() -> Vec<u8> {
    let body = graph(
        "forever",
        vec![
            node("Identity", &["cond_in"], &["cond_out"], vec![]),
            node("Identity", &["carried_in"], &["carried_out"], vec![]),
        ],
        vec![],
        vec![
            value("i", INT64, &[]),
            value("cond_in", BOOL, &[]),
            value("carried_in", FLOAT, &[D::Named("batch"), D::Fixed(64)]),
        ],
        vec![
            value("cond_out", BOOL, &[]),
            value("carried_out", FLOAT, &[D::Named("batch"), D::Fixed(64)]),
        ],
    );
    classifier(
        vec![node(
            "Loop",
            &["", "always", "input"],
            &["features"],
            vec![Attr::Graph("body", body)],
        )],
        vec![tensor_bool("always", true)],
        &[],
    )
}

/// A classifier whose every call first fills a tensor of `elements` f32 (from
/// `ConstantOfShape`, sized from the input's width so it cannot be folded at load time),
/// then adds 0 × its sum to the answer: `elements * 4` bytes per call.
pub fn memory_bomb(elements: i64) -> Vec<u8> {
    assert_eq!(elements % 64, 0, "a multiple of the input width");
    classifier(
        vec![
            node("Shape", &["input"], &["shape"], vec![]),
            node("Gather", &["shape", "one"], &["width"], vec![]),
            node("Mul", &["width", "factor"], &["count"], vec![]),
            node("Reshape", &["count", "as_vector"], &["bomb_shape"], vec![]),
            node(
                "ConstantOfShape",
                &["bomb_shape"],
                &["bomb"],
                vec![Attr::Tensor("value", tensor_f32("", &[1], &[1.0]))],
            ),
            node(
                "ReduceSum",
                &["bomb"],
                &["total"],
                vec![Attr::Int("keepdims", 0)],
            ),
            node("Mul", &["total", "zero"], &["nothing"], vec![]),
            node("Add", &["input", "nothing"], &["features"], vec![]),
        ],
        vec![
            tensor_i64("one", &[], &[1]),
            tensor_i64("factor", &[], &[elements / 64]),
            tensor_i64("as_vector", &[1], &[1]),
            tensor_f32("zero", &[], &[0.0]),
        ],
        &[],
    )
}

/// `n` metadata entries `key{i}` → `value{i}` padded to `value_len` bytes.
pub fn metadata(n: usize, value_len: usize) -> Vec<(String, String)> {
    (0..n)
        .map(|i| {
            let mut v = format!("value{i}");
            while v.len() < value_len {
                v.push('.');
            }
            (format!("key{i:06}"), v)
        })
        .collect()
}
