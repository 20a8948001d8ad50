//! GGUF files: header checks that turn a wrong, truncated or foreign file into a clear error,
//! then the file's metadata and its tensors, read on demand.

use std::fs::File;
use std::io::{BufReader, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use candle_core::quantized::ggml_file::qtensor_from_ggml;
use candle_core::quantized::gguf_file::Content;
use candle_core::quantized::QTensor;
use candle_core::Device;

use super::{Metadata, TensorSource};

const GGUF_MAGIC: &[u8; 4] = b"GGUF";

/// A GGUF file's metadata and tensors, its header checked so that its tensor data is known to
/// lie inside the file.
pub fn open(path: &Path) -> Result<(Metadata, GgufTensors)> {
    let file = File::open(path).with_context(|| {
        format!(
            "cannot open model file {}: give a path to a .gguf file or a registry name \
             (`valuelens models` lists them)",
            path.display()
        )
    })?;
    let file_size = file.metadata()?.len();
    let mut reader = BufReader::new(file);
    let mut magic = [0u8; 4];
    if reader.read_exact(&mut magic).is_err() || &magic != GGUF_MAGIC {
        bail!(
            "{} is not a GGUF file (it does not start with the bytes \"GGUF\"); \
             give a .gguf model file",
            path.display()
        );
    }
    reader.seek(SeekFrom::Start(0))?;
    let content = Content::read(&mut reader).map_err(|e| {
        let message = first_line(&e);
        match unread_tensor_type(&message) {
            Some(name) => anyhow::anyhow!(
                "{} stores tensors as {name}, a GGUF format valuelens does not read; use a \
                 Q4_K_M, Q5_K_M, Q6_K or Q8_0 file of the model (the formats people publish \
                 beside {name}), or convert this one with llama.cpp's \
                 `llama-quantize --allow-requantize FILE OUT.gguf Q4_K_M`",
                path.display()
            ),
            None => anyhow::anyhow!(
                "{} is a damaged or truncated GGUF file ({message}); fetch or copy it again",
                path.display()
            ),
        }
    })?;
    for (name, info) in &content.tensor_infos {
        let elems = info.shape.elem_count();
        let bytes = (elems / info.ggml_dtype.block_size() * info.ggml_dtype.type_size()) as u64;
        let end = content.tensor_data_offset + info.offset + bytes;
        if end > file_size {
            bail!(
                "{} is truncated: tensor '{name}' ends at byte {end} but the file has only \
                 {file_size} bytes; fetch or copy it again",
                path.display()
            );
        }
    }
    let mut content = content;
    let metadata = std::mem::take(&mut content.metadata);
    // SAFETY: the map is read only; a file changed by another process while a model loads
    // from it is outside what any loader can guard against (llama.cpp maps its files too).
    let map = unsafe { memmap2::Mmap::map(reader.get_ref()) }
        .with_context(|| format!("cannot map {} into memory", path.display()))?;
    let tensors = GgufTensors {
        path: path.to_path_buf(),
        content,
        map,
    };
    Ok((metadata, tensors))
}

/// The tensors of an opened GGUF file, read on demand from a memory map of it: each tensor is
/// copied once out of the map, and the map's pages it occupied are then released from this
/// process's resident memory (they stay in the page cache), so that loading holds the model's
/// own form of its weights and at most one source tensor beside them, never the whole file.
pub struct GgufTensors {
    path: PathBuf,
    content: Content,
    map: memmap2::Mmap,
}

impl GgufTensors {
    /// The storage format of tensor `name`, without reading it.
    pub fn dtype_of(&self, name: &str) -> Option<candle_core::quantized::GgmlDType> {
        self.content.tensor_infos.get(name).map(|i| i.ggml_dtype)
    }
}

impl TensorSource for GgufTensors {
    fn has(&self, name: &str) -> bool {
        self.content.tensor_infos.contains_key(name)
    }

    fn names(&self) -> Vec<String> {
        self.content.tensor_infos.keys().cloned().collect()
    }

    /// candle keeps them outermost first (GGUF lists them innermost first).
    fn dims(&self, name: &str) -> Option<Vec<usize>> {
        self.content
            .tensor_infos
            .get(name)
            .map(|info| info.shape.dims().to_vec())
    }

    fn dtype(&self, name: &str) -> Option<candle_core::quantized::GgmlDType> {
        self.dtype_of(name)
    }

    fn read(&mut self, name: &str) -> Result<QTensor> {
        let path = &self.path;
        let info = self
            .content
            .tensor_infos
            .get(name)
            .with_context(|| format!("{}: no tensor '{name}'", path.display()))?;
        let (dtype, dims) = (info.ggml_dtype, info.shape.dims().to_vec());
        let bytes = info.shape.elem_count() / dtype.block_size() * dtype.type_size();
        // Bounds were checked against the file's size when it was opened.
        let start = (self.content.tensor_data_offset + info.offset) as usize;
        let tensor = qtensor_from_ggml(dtype, &self.map[start..start + bytes], dims, &Device::Cpu)
            .map_err(|e| {
                anyhow::anyhow!(
                    "{}: cannot read tensor '{name}': {}",
                    path.display(),
                    first_line(&e)
                )
            })?;
        // SAFETY: MADV_DONTNEED on a private read-only file map only drops pages, which are
        // read again from the file if touched; no reference into the range outlives the copy.
        let _ = unsafe {
            self.map
                .unchecked_advise_range(memmap2::UncheckedAdvice::DontNeed, start, bytes)
        };
        Ok(tensor)
    }
}

/// candle appends a backtrace to its errors when RUST_BACKTRACE is set; users get the message.
/// The name of a GGUF tensor type that candle's reader refused (its message "unknown dtype for
/// tensor N"), where N is a type ggml defines: a real file in a format not read here, rather
/// than a damaged one.
fn unread_tensor_type(message: &str) -> Option<String> {
    let id: u32 = message
        .strip_prefix("unknown dtype for tensor ")?
        .trim()
        .parse()
        .ok()?;
    let name = match id {
        16 => "IQ2_XXS",
        17 => "IQ2_XS",
        18 => "IQ3_XXS",
        19 => "IQ1_S",
        20 => "IQ4_NL",
        21 => "IQ3_S",
        22 => "IQ2_S",
        23 => "IQ4_XS",
        24 => "I8",
        25 => "I16",
        26 => "I32",
        27 => "I64",
        28 => "F64",
        29 => "IQ1_M",
        31..=33 | 36..=38 => "a repacked Q4_0/IQ4_NL layout of older llama.cpp",
        34 => "TQ1_0",
        35 => "TQ2_0",
        39 => "MXFP4",
        _ => return None,
    };
    Some(format!("{name} (GGUF tensor type {id})"))
}

pub fn first_line(e: &candle_core::Error) -> String {
    e.to_string().lines().next().unwrap_or_default().to_string()
}
