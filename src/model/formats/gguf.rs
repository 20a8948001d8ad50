//! GGUF files: header checks that turn a wrong, truncated or foreign file into a clear error,
//! then the file's metadata and its tensors, read on demand.

use std::collections::HashMap;
use std::fs::File;
use std::io::{Cursor, Read};
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use candle_core::quantized::ggml_file::qtensor_from_ggml;
use candle_core::quantized::gguf_file::{Content, Value};
use candle_core::quantized::{GgmlDType, QTensor};
use candle_core::{Device, Tensor};
use rayon::prelude::*;

use super::foreign_quants::ForeignType;

use super::{Metadata, TensorSource};

const GGUF_MAGIC: &[u8; 4] = b"GGUF";

/// A GGUF file's metadata and tensors, its header checked so that its tensor data is known to
/// lie inside the file.
pub fn open(path: &Path) -> Result<(Metadata, GgufTensors)> {
    let mut file = File::open(path).with_context(|| {
        format!(
            "cannot open model file {}: give a path to a .gguf file or a registry name \
             (`valuelens models` lists them)",
            path.display()
        )
    })?;
    let file_size = file.metadata()?.len();
    let mut magic = [0u8; 4];
    if file.read_exact(&mut magic).is_err() || &magic != GGUF_MAGIC {
        bail!(
            "{} is not a GGUF file (it does not start with the bytes \"GGUF\"); \
             give a .gguf model file",
            path.display()
        );
    }
    // SAFETY: the map is read only; a file changed by another process while a model loads
    // from it is outside what any loader can guard against (llama.cpp maps its files too).
    let map = unsafe { memmap2::Mmap::map(&file) }
        .with_context(|| format!("cannot map {} into memory", path.display()))?;
    let (mut content, foreign) = read_header(path, &map)?;
    for (name, info) in &content.tensor_infos {
        let elems = info.shape.elem_count() as u64;
        let (block, size) = match foreign.get(name) {
            Some(f) => (f.block_size() as u64, f.type_size() as u64),
            None => (
                info.ggml_dtype.block_size() as u64,
                info.ggml_dtype.type_size() as u64,
            ),
        };
        if !elems.is_multiple_of(block) {
            bail!(
                "{} is damaged: tensor '{name}' has {elems} values, not whole blocks of {block}; \
                 fetch or copy it again",
                path.display()
            );
        }
        let end = content.tensor_data_offset + info.offset + elems / block * size;
        if end > file_size {
            bail!(
                "{} is truncated: tensor '{name}' ends at byte {end} but the file has only \
                 {file_size} bytes; fetch or copy it again",
                path.display()
            );
        }
    }
    say_dequantized_once(path, &foreign);
    let metadata = std::mem::take(&mut content.metadata);
    let tensors = GgufTensors {
        path: path.to_path_buf(),
        content,
        foreign,
        map,
    };
    Ok((metadata, tensors))
}

/// The GGUF tensor type ids candle reads.
const CANDLE_TYPES: [u32; 15] = [0, 1, 2, 3, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 30];

/// The file's header as candle reads it, and the tensors stored in formats candle does not know
/// but valuelens dequantizes ([`ForeignType`]): their type ids are read by [`scan_tensor_types`]
/// and, in a copy of the header, replaced by f32's for candle's reader; their real formats are
/// returned beside it.
fn read_header(path: &Path, bytes: &[u8]) -> Result<(Content, HashMap<String, ForeignType>)> {
    let damaged = |e: &candle_core::Error| {
        anyhow::anyhow!(
            "{} is a damaged or truncated GGUF file ({}); fetch or copy it again",
            path.display(),
            first_line(e)
        )
    };
    let error = match Content::read(&mut Cursor::new(bytes)) {
        Ok(content) => return Ok((content, HashMap::new())),
        Err(e) if first_line(&e).starts_with("unknown dtype for tensor ") => e,
        Err(e) => return Err(damaged(&e)),
    };
    let header = scan_tensor_types(bytes).ok_or_else(|| damaged(&error))?;
    let mut patched = bytes[..header.end].to_vec();
    let mut foreign = HashMap::new();
    for tensor in header.tensors {
        if CANDLE_TYPES.contains(&tensor.type_id) {
            continue;
        }
        let Some(format) = ForeignType::from_id(tensor.type_id) else {
            bail!(
                "{} stores tensor '{}' as {}, a GGUF format valuelens does not read; use a \
                 Q4_K_M, Q5_K_M, Q6_K or Q8_0 file of the model, or convert this one with \
                 llama.cpp's `llama-quantize --allow-requantize FILE OUT.gguf Q4_K_M`",
                path.display(),
                tensor.name,
                type_name(tensor.type_id)
            );
        };
        patched[tensor.type_at..tensor.type_at + 4].copy_from_slice(&0u32.to_le_bytes());
        foreign.insert(tensor.name, format);
    }
    let content = Content::read(&mut Cursor::new(&patched)).map_err(|e| damaged(&e))?;
    Ok((content, foreign))
}

/// A tensor's entry in a GGUF header: its name, type id and where the id lies in the file.
struct TensorEntry {
    name: String,
    type_id: u32,
    type_at: usize,
}

/// The tensor entries of a GGUF header (v1–v3) and where the header ends; `None` where the
/// bytes are not a whole header. Only what locating the type ids needs is read: metadata
/// values are skipped, not decoded (candle's reader decodes them).
struct HeaderScan {
    tensors: Vec<TensorEntry>,
    end: usize,
}

fn scan_tensor_types(bytes: &[u8]) -> Option<HeaderScan> {
    struct Reader<'a> {
        bytes: &'a [u8],
        at: usize,
        wide: bool,
    }
    impl Reader<'_> {
        fn take(&mut self, n: u64) -> Option<&[u8]> {
            let end = self.at.checked_add(usize::try_from(n).ok()?)?;
            let slice = self.bytes.get(self.at..end)?;
            self.at = end;
            Some(slice)
        }
        fn u32(&mut self) -> Option<u32> {
            Some(u32::from_le_bytes(self.take(4)?.try_into().ok()?))
        }
        fn u64(&mut self) -> Option<u64> {
            Some(u64::from_le_bytes(self.take(8)?.try_into().ok()?))
        }
        /// A count or length: u64 from version 2 on, u32 in version 1.
        fn len(&mut self) -> Option<u64> {
            if self.wide {
                self.u64()
            } else {
                self.u32().map(u64::from)
            }
        }
        fn string(&mut self) -> Option<&[u8]> {
            let n = self.len()?;
            self.take(n)
        }
        fn skip_value(&mut self, kind: u32, depth: usize) -> Option<()> {
            match kind {
                0 | 1 | 7 => self.take(1).map(drop),
                2 | 3 => self.take(2).map(drop),
                4..=6 => self.take(4).map(drop),
                10..=12 => self.take(8).map(drop),
                8 => self.string().map(drop),
                9 if depth < 64 => {
                    let (inner, n) = (self.u32()?, self.len()?);
                    let fixed = match inner {
                        0 | 1 | 7 => Some(1),
                        2 | 3 => Some(2),
                        4..=6 => Some(4),
                        10..=12 => Some(8),
                        _ => None,
                    };
                    match fixed {
                        Some(size) => self.take(n.checked_mul(size)?).map(drop),
                        None => (0..n).try_for_each(|_| self.skip_value(inner, depth + 1)),
                    }
                }
                _ => None,
            }
        }
    }
    let mut r = Reader {
        bytes,
        at: 4,
        wide: true,
    };
    r.wide = r.u32()? >= 2;
    let (tensors, entries) = (r.len()?, r.len()?);
    for _ in 0..entries {
        r.string()?;
        let kind = r.u32()?;
        r.skip_value(kind, 0)?;
    }
    let mut found = Vec::new();
    for _ in 0..tensors {
        let name = String::from_utf8_lossy(r.string()?)
            .trim_end_matches('\0')
            .to_string();
        let dims = r.u32()?;
        r.take(u64::from(dims) * if r.wide { 8 } else { 4 })?;
        let type_at = r.at;
        let type_id = r.u32()?;
        r.u64()?;
        found.push(TensorEntry {
            name,
            type_id,
            type_at,
        });
    }
    Some(HeaderScan {
        tensors: found,
        end: r.at,
    })
}

/// Says on stderr, once per process and file, which tensors are dequantized at load because
/// valuelens has no kernel for their format.
fn say_dequantized_once(path: &Path, foreign: &HashMap<String, ForeignType>) {
    static SAID: std::sync::Mutex<Vec<PathBuf>> = std::sync::Mutex::new(Vec::new());
    if foreign.is_empty() {
        return;
    }
    let mut said = SAID.lock().unwrap_or_else(|e| e.into_inner());
    if said.iter().any(|p| p == path) {
        return;
    }
    said.push(path.to_path_buf());
    eprintln!(
        "valuelens: {} stores {}: formats without a valuelens kernel, dequantized at load (to \
         f32, then to 8-bit Q8_0, 8.5 bits per weight, where the weights stay in blocks)",
        path.display(),
        foreign_summary(foreign)
    );
}

/// `224 tensors as IQ4_XS, 3 as IQ3_S`: the foreign formats of a file, most used first.
fn foreign_summary(foreign: &HashMap<String, ForeignType>) -> String {
    let mut counts = HashMap::<&str, usize>::new();
    for format in foreign.values() {
        *counts.entry(format.name()).or_default() += 1;
    }
    let mut counts: Vec<(&str, usize)> = counts.into_iter().collect();
    counts.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
    counts
        .iter()
        .enumerate()
        .map(|(i, (name, n))| match (i, *n) {
            (0, 1) => format!("1 tensor as {name}"),
            (0, n) => format!("{n} tensors as {name}"),
            (_, n) => format!("{n} as {name}"),
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// The tensors of an opened GGUF file, read on demand from a memory map of it: each tensor is
/// copied once out of the map, and the map's pages it occupied are then released from this
/// process's resident memory (they stay in the page cache), so that loading holds the model's
/// own form of its weights and at most one source tensor beside them, never the whole file.
pub struct GgufTensors {
    path: PathBuf,
    content: Content,
    /// Tensors in formats candle does not read (their entries in `content` say f32).
    foreign: HashMap<String, ForeignType>,
    map: memmap2::Mmap,
}

impl GgufTensors {
    /// The storage format of tensor `name`, without reading it (f32 for formats that are
    /// dequantized at reading).
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

    fn stored_as(&self, name: &str) -> Option<String> {
        self.foreign.get(name).map(|f| f.name().to_string())
    }

    fn read(&mut self, name: &str) -> Result<QTensor> {
        let path = &self.path;
        let info = self
            .content
            .tensor_infos
            .get(name)
            .with_context(|| format!("{}: no tensor '{name}'", path.display()))?;
        let (dtype, dims) = (info.ggml_dtype, info.shape.dims().to_vec());
        let elems = info.shape.elem_count();
        // Bounds were checked against the file's size when it was opened.
        let start = (self.content.tensor_data_offset + info.offset) as usize;
        let cannot_read = |e: candle_core::Error| {
            anyhow::anyhow!(
                "{}: cannot read tensor '{name}': {}",
                path.display(),
                first_line(&e)
            )
        };
        let (tensor, bytes) = match self.foreign.get(name) {
            Some(format) => {
                let bytes = elems / format.block_size() * format.type_size();
                let mut values = vec![0f32; elems];
                // Blocks are independent: chunks of them on all threads give the same values.
                let blocks_per_chunk = 1024;
                values
                    .par_chunks_mut(blocks_per_chunk * format.block_size())
                    .zip(
                        self.map[start..start + bytes]
                            .par_chunks(blocks_per_chunk * format.type_size()),
                    )
                    .for_each(|(out, data)| format.dequantize(data, out));
                let dense = Tensor::from_vec(values, dims, &Device::Cpu).map_err(cannot_read)?;
                let tensor = QTensor::quantize(&dense, GgmlDType::F32).map_err(cannot_read)?;
                (tensor, bytes)
            }
            None => {
                let bytes = elems / dtype.block_size() * dtype.type_size();
                let data = &self.map[start..start + bytes];
                let tensor =
                    qtensor_from_ggml(dtype, data, dims, &Device::Cpu).map_err(cannot_read)?;
                (tensor, bytes)
            }
        };
        // SAFETY: MADV_DONTNEED on a private read-only file map only drops pages, which are
        // read again from the file if touched; no reference into the range outlives the copy.
        let _ = unsafe {
            self.map
                .unchecked_advise_range(memmap2::UncheckedAdvice::DontNeed, start, bytes)
        };
        Ok(tensor)
    }
}

/// The files of a split GGUF (llama.cpp's `gguf-split`: `NAME-00001-of-00003.gguf` and its
/// siblings), in order, when `path` names one of them; `None` for a file that is whole.
pub fn split_parts(path: &Path) -> Option<Vec<PathBuf>> {
    let name = path.file_name()?.to_str()?;
    let stem = name.strip_suffix(".gguf")?;
    let (rest, count) = stem.rsplit_once("-of-")?;
    let (base, number) = rest.rsplit_once('-')?;
    let five_digits = |s: &str| s.len() == 5 && s.bytes().all(|b| b.is_ascii_digit());
    if !five_digits(count) || !five_digits(number) {
        return None;
    }
    let count: usize = count.parse().ok().filter(|&n| n > 1)?;
    Some(
        (1..=count)
            .map(|i| path.with_file_name(format!("{base}-{i:05}-of-{count:05}.gguf")))
            .collect(),
    )
}

/// The tensors of a split GGUF, each read from the part that holds it.
pub struct SplitTensors {
    parts: Vec<GgufTensors>,
    /// Tensor name → index into `parts`.
    part_of: HashMap<String, usize>,
}

/// A split GGUF as one model: the metadata of its first part (the others carry only their
/// `split.*` keys) and every part's tensors. Each part must be there, whole, and say it belongs
/// (`split.count`).
pub fn open_split(parts: &[PathBuf]) -> Result<(Metadata, SplitTensors)> {
    let mut opened = Vec::new();
    let mut metadata = None;
    for (i, path) in parts.iter().enumerate() {
        if !path.is_file() {
            bail!(
                "{}: missing; a split GGUF loads from all its {} parts, which must lie in one                  folder",
                path.display(),
                parts.len()
            );
        }
        let (meta, tensors) = open(path)?;
        // gguf-split writes split.count as u16.
        let count = match meta.get("split.count") {
            Some(Value::U16(n)) => Some(u32::from(*n)),
            Some(Value::U32(n)) => Some(*n),
            _ => None,
        };
        if count.is_some_and(|c| c as usize != parts.len()) {
            bail!(
                "{} says it is one of {} parts, but its name says {}; the split files are mixed",
                path.display(),
                count.unwrap_or_default(),
                parts.len()
            );
        }
        if i == 0 {
            metadata = Some(meta);
        }
        opened.push(tensors);
    }
    let mut part_of = HashMap::new();
    for (i, part) in opened.iter().enumerate() {
        for name in part.content.tensor_infos.keys() {
            if part_of.insert(name.clone(), i).is_some() {
                bail!(
                    "{}: tensor '{name}' is in two parts of the split model",
                    part.path.display()
                );
            }
        }
    }
    let metadata = metadata.expect("a split has parts");
    Ok((
        metadata,
        SplitTensors {
            parts: opened,
            part_of,
        },
    ))
}

impl TensorSource for SplitTensors {
    fn has(&self, name: &str) -> bool {
        self.part_of.contains_key(name)
    }

    fn names(&self) -> Vec<String> {
        self.part_of.keys().cloned().collect()
    }

    fn dims(&self, name: &str) -> Option<Vec<usize>> {
        self.parts[*self.part_of.get(name)?].dims(name)
    }

    fn dtype(&self, name: &str) -> Option<GgmlDType> {
        self.parts[*self.part_of.get(name)?].dtype(name)
    }

    fn stored_as(&self, name: &str) -> Option<String> {
        self.parts[*self.part_of.get(name)?].stored_as(name)
    }

    fn read(&mut self, name: &str) -> Result<QTensor> {
        let part = *self.part_of.get(name).with_context(|| {
            format!(
                "{}: no tensor '{name}' in any part",
                self.parts[0].path.display()
            )
        })?;
        self.parts[part].read(name)
    }
}

/// ggml's name of a GGUF tensor type that neither candle nor valuelens reads, with its id.
fn type_name(id: u32) -> String {
    if let Some(format) = ForeignType::from_id(id) {
        return format!("{} (GGUF tensor type {id})", format.name());
    }
    // The foreign formats are named above; what is left are integer and float types no model
    // stores its matrices in, and the repacked layouts older llama.cpp versions wrote.
    let name = match id {
        24 => "I8",
        25 => "I16",
        26 => "I32",
        27 => "I64",
        28 => "F64",
        31..=33 | 36..=38 => "a repacked Q4_0/IQ4_NL layout of older llama.cpp",
        _ => {
            return format!(
                "GGUF tensor type {id}, unknown to valuelens (a newer llama.cpp format?)"
            )
        }
    };
    format!("{name} (GGUF tensor type {id})")
}

/// candle appends a backtrace to its errors when RUST_BACKTRACE is set; users get the message.
pub fn first_line(e: &candle_core::Error) -> String {
    e.to_string().lines().next().unwrap_or_default().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_names_list_every_part() {
        let parts = split_parts(Path::new("/m/Model-Q4_K_M-00002-of-00003.gguf")).unwrap();
        assert_eq!(parts.len(), 3);
        assert_eq!(parts[0], Path::new("/m/Model-Q4_K_M-00001-of-00003.gguf"));
        assert_eq!(parts[2], Path::new("/m/Model-Q4_K_M-00003-of-00003.gguf"));
        assert_eq!(split_parts(Path::new("/m/model-q4.gguf")), None);
        assert_eq!(split_parts(Path::new("/m/m-00001-of-00001.gguf")), None);
        assert_eq!(split_parts(Path::new("/m/m-1-of-3.gguf")), None);
    }
}
