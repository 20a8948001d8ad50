//! Opening a GGUF file: header checks that turn a wrong, truncated or foreign file into a clear
//! error, typed metadata look-ups, and tensor reads.

use std::collections::HashMap;
use std::fs::File;
use std::io::{BufReader, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use candle_core::quantized::gguf_file::{Content, Value};
use candle_core::quantized::QTensor;
use candle_core::Device;

const GGUF_MAGIC: &[u8; 4] = b"GGUF";

/// A GGUF file whose header and metadata have been read and whose tensor data is known to lie
/// inside the file.
pub struct GgufFile {
    pub path: PathBuf,
    content: Content,
    reader: BufReader<File>,
}

impl GgufFile {
    pub fn open(path: &Path) -> Result<Self> {
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
            anyhow::anyhow!(
                "{} is a damaged or truncated GGUF file ({}); fetch or copy it again",
                path.display(),
                first_line(&e)
            )
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
        Ok(Self {
            path: path.to_path_buf(),
            content,
            reader,
        })
    }

    pub fn metadata(&self) -> &HashMap<String, Value> {
        &self.content.metadata
    }

    fn get(&self, key: &str) -> Result<&Value> {
        self.content.metadata.get(key).with_context(|| {
            format!(
                "{}: metadata key '{key}' is missing; the file is not a complete model",
                self.path.display()
            )
        })
    }

    pub fn has(&self, key: &str) -> bool {
        self.content.metadata.contains_key(key)
    }

    pub fn string(&self, key: &str) -> Result<String> {
        Ok(self
            .get(key)?
            .to_string()
            .with_context(|| self.bad_type(key, "a string"))?
            .clone())
    }

    pub fn usize(&self, key: &str) -> Result<usize> {
        let value = self.get(key)?;
        let n = match value {
            Value::U8(v) => *v as u64,
            Value::U16(v) => *v as u64,
            Value::U32(v) => *v as u64,
            Value::U64(v) => *v,
            Value::I8(v) if *v >= 0 => *v as u64,
            Value::I16(v) if *v >= 0 => *v as u64,
            Value::I32(v) if *v >= 0 => *v as u64,
            Value::I64(v) if *v >= 0 => *v as u64,
            _ => bail!(self.bad_type(key, "a non-negative integer")),
        };
        Ok(n as usize)
    }

    pub fn f32(&self, key: &str) -> Result<f32> {
        match self.get(key)? {
            Value::F32(v) => Ok(*v),
            Value::F64(v) => Ok(*v as f32),
            _ => bail!(self.bad_type(key, "a float")),
        }
    }

    pub fn bool_or(&self, key: &str, default: bool) -> Result<bool> {
        match self.content.metadata.get(key) {
            None => Ok(default),
            Some(v) => v.to_bool().with_context(|| self.bad_type(key, "a bool")),
        }
    }

    pub fn strings(&self, key: &str) -> Result<Vec<String>> {
        self.get(key)?
            .to_vec()
            .with_context(|| self.bad_type(key, "an array"))?
            .iter()
            .map(|v| {
                v.to_string()
                    .cloned()
                    .with_context(|| self.bad_type(key, "an array of strings"))
            })
            .collect()
    }

    pub fn integers(&self, key: &str) -> Result<Vec<i64>> {
        self.get(key)?
            .to_vec()
            .with_context(|| self.bad_type(key, "an array"))?
            .iter()
            .map(|v| match v {
                Value::I32(x) => Ok(*x as i64),
                Value::U32(x) => Ok(*x as i64),
                Value::I64(x) => Ok(*x),
                Value::U64(x) => Ok(*x as i64),
                Value::I8(x) => Ok(*x as i64),
                Value::U8(x) => Ok(*x as i64),
                _ => bail!(self.bad_type(key, "an array of integers")),
            })
            .collect()
    }

    fn bad_type(&self, key: &str, expected: &str) -> String {
        format!(
            "{}: metadata key '{key}' is not {expected}",
            self.path.display()
        )
    }

    pub fn has_tensor(&self, name: &str) -> bool {
        self.content.tensor_infos.contains_key(name)
    }

    pub fn tensor(&mut self, name: &str) -> Result<QTensor> {
        if !self.has_tensor(name) {
            bail!(
                "{}: tensor '{name}' is missing; the file is not a complete model",
                self.path.display()
            );
        }
        self.content
            .tensor(&mut self.reader, name, &Device::Cpu)
            .map_err(|e| {
                anyhow::anyhow!(
                    "{}: cannot read tensor '{name}': {}",
                    self.path.display(),
                    first_line(&e)
                )
            })
    }
}

/// candle appends a backtrace to its errors when RUST_BACKTRACE is set; users get the message.
fn first_line(e: &candle_core::Error) -> String {
    e.to_string().lines().next().unwrap_or_default().to_string()
}
