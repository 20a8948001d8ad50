//! GGUF files in formats candle does not read (IQ*, TQ*, MXFP4) load: their tensors are
//! dequantized exactly at reading, said in one line, and recorded as converted where the
//! weights stay in blocks. The file here is SmolLM2 with its down projections stored as
//! IQ4_NL (quantized by this test to the nearest of IQ4_NL's 16 levels per block), beside a
//! twin that stores the same weights as f32: both must score to the bit the same.

mod common;

use candle_core::quantized::ggml_file::qtensor_from_ggml;
use candle_core::quantized::gguf_file::{self, Content};
use candle_core::quantized::{GgmlDType, QTensor};
use candle_core::{Device, Tensor};
use common::{default_model_path, fixtures, succeed};
use valuelens::engine::{self, EngineOptions, Request};
use valuelens::model::{Model, Precision};

/// IQ4_NL's levels (llama.cpp's `kvalues_iq4nl`).
const LEVELS: [i8; 16] = [
    -127, -104, -83, -65, -49, -35, -22, -10, 1, 13, 25, 38, 53, 69, 89, 113,
];
const IQ4_NL: u32 = 20;

/// Rows of floats as IQ4_NL blocks (f16 scale, 16 bytes of nibbles: value `j` low, `j + 16`
/// high), and the weights those blocks stand for, computed as ggml dequantizes them.
fn iq4_nl(values: &[f32]) -> (Vec<u8>, Vec<f32>) {
    let (mut bytes, mut weights) = (Vec::new(), Vec::new());
    for block in values.chunks(32) {
        let amax = block.iter().fold(0f32, |m, v| m.max(v.abs()));
        let d = half::f16::from_f32(amax / 127.0);
        let scale = d.to_f32();
        let nearest = |v: f32| {
            (0..16)
                .min_by(|&a, &b| {
                    let da = (LEVELS[a] as f32 * scale - v).abs();
                    let db = (LEVELS[b] as f32 * scale - v).abs();
                    da.total_cmp(&db)
                })
                .unwrap() as u8
        };
        let q: Vec<u8> = block.iter().map(|&v| nearest(v)).collect();
        bytes.extend(d.to_le_bytes());
        bytes.extend((0..16).map(|j| q[j] | (q[j + 16] << 4)));
        weights.extend(q.iter().map(|&i| scale * LEVELS[i as usize] as f32));
    }
    (bytes, weights)
}

/// SmolLM2 written twice: its down projections as IQ4_NL, and as the f32 weights the IQ4_NL
/// blocks stand for. Returns (IQ4_NL file, f32 twin, matrices changed).
fn write_files(dir: &std::path::Path) -> (std::path::PathBuf, std::path::PathBuf, usize) {
    let mut file = std::fs::File::open(default_model_path()).unwrap();
    let content = Content::read(&mut file).unwrap();
    let mut names: Vec<&String> = content.tensor_infos.keys().collect();
    names.sort();
    let (mut iq, mut twin) = (Vec::new(), Vec::new());
    let mut changed = Vec::new();
    for name in names {
        let tensor = content.tensor(&mut file, name, &Device::Cpu).unwrap();
        if !name.ends_with("ffn_down.weight") {
            iq.push((name.clone(), tensor));
            let again = content.tensor(&mut file, name, &Device::Cpu).unwrap();
            twin.push((name.clone(), again));
            continue;
        }
        let dims = tensor.shape().dims().to_vec();
        let dense = tensor.dequantize(&Device::Cpu).unwrap();
        let values = dense.flatten_all().unwrap().to_vec1::<f32>().unwrap();
        let (bytes, weights) = iq4_nl(&values);
        // Q4_0's blocks have IQ4_NL's size and layout (a scale, then 16 bytes of nibbles):
        // written as Q4_0, then the type id in the header is set to IQ4_NL's.
        iq.push((
            name.clone(),
            qtensor_from_ggml(GgmlDType::Q4_0, &bytes, dims.clone(), &Device::Cpu).unwrap(),
        ));
        let f32 = Tensor::from_vec(weights, dims, &Device::Cpu).unwrap();
        twin.push((
            name.clone(),
            QTensor::quantize(&f32, GgmlDType::F32).unwrap(),
        ));
        changed.push(name.clone());
    }
    let metadata: Vec<(&str, &gguf_file::Value)> = content
        .metadata
        .iter()
        .map(|(k, v)| (k.as_str(), v))
        .collect();
    let write = |tensors: &[(String, QTensor)]| {
        let tensors: Vec<(&str, &QTensor)> = tensors.iter().map(|(n, t)| (n.as_str(), t)).collect();
        let mut bytes = Vec::new();
        gguf_file::write(&mut std::io::Cursor::new(&mut bytes), &metadata, &tensors).unwrap();
        bytes
    };
    let iq_path = dir.join("smollm2-iq4_nl.gguf");
    let twin_path = dir.join("smollm2-f32-down.gguf");
    let mut iq_bytes = write(&iq);
    for name in &changed {
        common::set_matrix_type(&mut iq_bytes, name, 2, IQ4_NL);
    }
    std::fs::write(&iq_path, iq_bytes).unwrap();
    std::fs::write(&twin_path, write(&twin)).unwrap();
    (iq_path, twin_path, changed.len())
}

fn requests() -> Vec<Request> {
    fixtures("smollm2-135m")
        .0
        .into_iter()
        .filter(|r| r.context.len() < 600)
        .take(8)
        .collect()
}

#[test]
fn iq4_nl_matrices_load_as_the_weights_they_stand_for() {
    let dir = tempfile::tempdir().unwrap();
    let (iq, twin, changed) = write_files(dir.path());
    assert_eq!(changed, 30, "one down projection per layer");
    let requests = requests();
    let options = EngineOptions::default();
    for precision in [Precision::F32, Precision::Quantized] {
        let a = Model::load_file("smollm2-iq4_nl", &iq, precision).unwrap();
        let b = Model::load_file("smollm2-f32-down", &twin, precision).unwrap();
        if precision == Precision::Quantized {
            assert_eq!(a.converted, ["IQ4_NL → Q8_0 (30 matrices)"]);
            assert_eq!(b.converted, ["F32 → Q8_0 (30 matrices)"]);
        } else {
            assert!(a.converted.is_empty(), "{:?}", a.converted);
        }
        let x = engine::score(&a, &requests, &options, None).unwrap();
        let y = engine::score(&b, &requests, &options, None).unwrap();
        for (p, q) in x.iter().zip(&y) {
            assert_eq!(p.token_logprobs, q.token_logprobs, "{precision:?} {}", p.id);
        }
    }

    // The command line says so in one line, and scores.
    let input = dir.path().join("requests.jsonl");
    let lines: Vec<String> = requests
        .iter()
        .map(|r| serde_json::to_string(r).unwrap())
        .collect();
    std::fs::write(&input, lines.join("\n")).unwrap();
    let mut command = common::valuelens_command();
    command
        .args(["score", "--dtype", "quantized", "--model"])
        .arg(&iq)
        .arg("--input")
        .arg(&input)
        .arg("--output")
        .arg(dir.path().join("scores.jsonl"));
    let output = succeed(command);
    let stderr = String::from_utf8_lossy(&output.stderr);
    let said: Vec<&str> = stderr
        .lines()
        .filter(|l| l.contains("30 tensors as IQ4_NL"))
        .collect();
    assert_eq!(said.len(), 1, "{stderr}");
    assert!(said[0].contains("smollm2-iq4_nl.gguf"), "{stderr}");
}
