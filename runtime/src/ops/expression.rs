//! ncnn's shape-expression language (the string parameters pnnx writes for dynamic shapes,
//! e.g. Reshape key 6, Interp key 9, Crop keys 19 / 20 / 21), parsed at load and evaluated
//! at shape inference from the input shapes.
//!
//! Syntax: prefix calls, `(`, `)` and `,` only separate tokens, so `*(0w,2),0c` is the token
//! list `* 0w 2 0c`. The list is evaluated right to left with a stack: a literal or blob
//! dimension pushes a value, an operator pops its operands (the first one is the one written
//! first) and pushes its result. What is left on the stack, top first, is the result list
//! (`*(0w,2),0c` gives `[2 * w0, c0]`).
//!
//! Tokens:
//! * `<k>w`, `<k>h`, `<k>d`, `<k>c`, `<k>n`: dimension of input blob `k` (one digit; `n`, the
//!   batch, is 1). Unused dimensions of a lower-rank blob are 1.
//! * literals: an integer (`12`, `-1`) or a float (`0.5`, `1e3`; a float equal to its
//!   leading integer, like `2.0`, is the integer).
//! * binary, integer when both operands are (`+ - * // max min`; `//` truncates toward zero on
//!   integers and floors on floats; integer `//` by zero is an error), always float
//!   (`/ atan2 fmod pow remainder logaddexp`), bitwise on the integer bits (`and or xor lshift
//!   rshift`).
//! * unary keeping the type: `abs neg sign square`; to integer: `trunc ceil floor round`
//!   (round: half away from zero; integers pass unchanged); to float: `acos acosh asin asinh
//!   atan atanh cos cosh erf exp log log10 reciprocal rsqrt sin sinh sqrt tan tanh`.
//!
//! Each result is converted to an integer by truncation. An expression whose operators lack
//! operands, or an unknown token, is refused at load with a one-line error.

use crate::error::{invalid, LayerResult};
use crate::tensor::Shape;

/// Longest expression accepted (ncnn's string parameters hold at most 255 characters).
const MAX_TOKENS: usize = 256;

#[derive(Clone, Copy, Debug, PartialEq)]
enum Axis {
    W,
    H,
    D,
    C,
    N,
}

#[derive(Clone, Copy, Debug)]
enum Fun {
    // Binary, typed.
    Add,
    Sub,
    Mul,
    FloorDiv,
    Max,
    Min,
    // Binary, float.
    Div,
    Atan2,
    Fmod,
    Pow,
    Remainder,
    LogAddExp,
    // Binary, bitwise.
    And,
    Or,
    Xor,
    Shl,
    Shr,
    // Unary, typed.
    Abs,
    Neg,
    Sign,
    Square,
    // Unary, to integer.
    Trunc,
    Ceil,
    Floor,
    Round,
    // Unary, float.
    Float(fn(f32) -> f32),
}

impl std::fmt::Debug for Token {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Token::Dim(b, a) => write!(f, "{b}{a:?}"),
            Token::Value(v) => write!(f, "{v:?}"),
            Token::Call(Fun::Float(_), _) => write!(f, "float-fn"),
            Token::Call(fun, _) => write!(f, "{fun:?}"),
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Value {
    Int(i32),
    Float(f32),
}

impl Value {
    fn f(self) -> f32 {
        match self {
            Value::Int(i) => i as f32,
            Value::Float(f) => f,
        }
    }
    /// The integer word, as ncnn reads its union (a float's bits for bitwise operators).
    fn bits(self) -> i32 {
        match self {
            Value::Int(i) => i,
            Value::Float(f) => f.to_bits() as i32,
        }
    }
    fn to_int(self) -> i32 {
        match self {
            Value::Int(i) => i,
            Value::Float(f) => f as i32,
        }
    }
}

#[derive(Clone, Copy)]
enum Token {
    Dim(usize, Axis),
    Value(Value),
    /// A function and its arity.
    Call(Fun, usize),
}

/// A parsed expression list.
#[derive(Clone, Debug)]
pub struct Expr {
    text: String,
    /// In written order; evaluated from the end.
    tokens: Vec<Token>,
    blobs: usize,
    results: usize,
}

/// Two lists are equal when written alike (the tokens follow from the text).
impl PartialEq for Expr {
    fn eq(&self, other: &Expr) -> bool {
        self.text == other.text
    }
}

fn function(name: &str) -> Option<(Fun, usize)> {
    use Fun::*;
    let float1 = |f: fn(f32) -> f32| Some((Float(f), 1));
    match name {
        "+" => Some((Add, 2)),
        "-" => Some((Sub, 2)),
        "*" => Some((Mul, 2)),
        "//" => Some((FloorDiv, 2)),
        "max" => Some((Max, 2)),
        "min" => Some((Min, 2)),
        "/" => Some((Div, 2)),
        "atan2" => Some((Atan2, 2)),
        "fmod" => Some((Fmod, 2)),
        "pow" => Some((Pow, 2)),
        "remainder" => Some((Remainder, 2)),
        "logaddexp" => Some((LogAddExp, 2)),
        "and" => Some((And, 2)),
        "or" => Some((Or, 2)),
        "xor" => Some((Xor, 2)),
        "lshift" => Some((Shl, 2)),
        "rshift" => Some((Shr, 2)),
        "abs" => Some((Abs, 1)),
        "neg" => Some((Neg, 1)),
        "sign" => Some((Sign, 1)),
        "square" => Some((Square, 1)),
        "trunc" => Some((Trunc, 1)),
        "ceil" => Some((Ceil, 1)),
        "floor" => Some((Floor, 1)),
        "round" => Some((Round, 1)),
        "acos" => float1(f32::acos),
        "acosh" => float1(f32::acosh),
        "asin" => float1(f32::asin),
        "asinh" => float1(f32::asinh),
        "atan" => float1(f32::atan),
        "atanh" => float1(f32::atanh),
        "cos" => float1(f32::cos),
        "cosh" => float1(f32::cosh),
        "erf" => float1(erf),
        "exp" => float1(f32::exp),
        "log" => float1(f32::ln),
        "log10" => float1(f32::log10),
        "reciprocal" => float1(|a| 1.0 / a),
        "rsqrt" => float1(|a| 1.0 / a.sqrt()),
        "sin" => float1(f32::sin),
        "sinh" => float1(f32::sinh),
        "sqrt" => float1(f32::sqrt),
        "tan" => float1(f32::tan),
        "tanh" => float1(f32::tanh),
        _ => None,
    }
}

/// erf in f64 (Abramowitz-Stegun 7.1.26 is too coarse; this series / continued fraction
/// pair is exact to f32 rounding), narrowed to f32.
fn erf(x: f32) -> f32 {
    let x = x as f64;
    let a = x.abs();
    let r = if a < 2.5 {
        // Maclaurin series.
        let (mut term, mut sum, x2) = (a, a, a * a);
        for n in 1..60 {
            term *= -x2 / n as f64;
            let t = term / (2 * n + 1) as f64;
            sum += t;
            if t.abs() < 1e-17 {
                break;
            }
        }
        sum * 2.0 / std::f64::consts::PI.sqrt()
    } else {
        // Continued fraction for erfc.
        let mut f = 0.0;
        for k in (1..60).rev() {
            f = (k as f64 / 2.0) / (a + f);
        }
        1.0 - (-a * a).exp() / (std::f64::consts::PI.sqrt() * (a + f))
    };
    (if x < 0.0 { -r } else { r }) as f32
}

/// Parses a literal as ncnn does: integer when it reads as one (or as a float equal to its
/// leading integer), else float.
fn literal(t: &str) -> Option<Value> {
    // sscanf skips leading white space.
    let t = t.trim_start();
    if let Ok(i) = t.parse::<i32>() {
        return Some(Value::Int(i));
    }
    let f = t.parse::<f32>().ok()?;
    let digits = t
        .char_indices()
        .find(|&(i, c)| !(c.is_ascii_digit() || (i == 0 && (c == '-' || c == '+'))))
        .map_or(t.len(), |(i, _)| i);
    match t[..digits].parse::<i32>() {
        Ok(i) if i as f32 == f => Some(Value::Int(i)),
        _ => Some(Value::Float(f)),
    }
}

impl Expr {
    /// Parses an expression list; checks every token and that each operator has its operands.
    pub fn parse(text: &str) -> LayerResult<Expr> {
        let bad = |msg: String| invalid(format!("expression `{text}`: {msg}"));
        let mut tokens = Vec::new();
        let mut blobs = 0;
        let words: Vec<&str> = text
            .split(['(', ')', ','])
            .filter(|t| !t.is_empty())
            .collect();
        for &t in &words {
            let b = t.as_bytes();
            let tok = if b.len() == 2 && b[0].is_ascii_digit() && b"whdcn".contains(&b[1]) {
                let k = (b[0] - b'0') as usize;
                blobs = blobs.max(k + 1);
                let axis = match b[1] {
                    b'w' => Axis::W,
                    b'h' => Axis::H,
                    b'd' => Axis::D,
                    b'c' => Axis::C,
                    _ => Axis::N,
                };
                Token::Dim(k, axis)
            } else if let Some((fun, arity)) = function(t) {
                Token::Call(fun, arity)
            } else if let Some(v) = literal(t) {
                Token::Value(v)
            } else {
                return Err(bad(format!("unknown token `{t}`")));
            };
            tokens.push(tok);
        }
        if tokens.len() > MAX_TOKENS {
            return Err(bad(format!("more than {MAX_TOKENS} tokens")));
        }
        // Stack depth, right to left.
        let mut depth = 0usize;
        for (tok, word) in tokens.iter().zip(&words).rev() {
            match tok {
                Token::Call(_, arity) => {
                    if depth < *arity {
                        return Err(bad(format!("`{word}` lacks operands")));
                    }
                    depth -= arity - 1;
                }
                _ => depth += 1,
            }
        }
        if depth == 0 {
            return Err(bad("empty".into()));
        }
        Ok(Expr {
            text: text.to_string(),
            tokens,
            blobs,
            results: depth,
        })
    }

    /// Number of input blobs it reads (highest blob index + 1; 0 for constants).
    pub fn blob_count(&self) -> usize {
        self.blobs
    }

    /// Length of the result list.
    pub fn len(&self) -> usize {
        self.results
    }

    pub fn is_empty(&self) -> bool {
        self.results == 0
    }

    pub fn text(&self) -> &str {
        &self.text
    }

    /// Evaluates the list for these input shapes.
    pub fn eval(&self, inputs: &[Shape]) -> LayerResult<Vec<i32>> {
        let mut out = vec![0; self.results];
        self.eval_into(inputs, &mut out)?;
        Ok(out)
    }

    /// Evaluates without allocating (usable in `forward`): writes the first `out.len()`
    /// values of the list to `out` and returns the list's length.
    pub fn eval_into(&self, inputs: &[Shape], out: &mut [i32]) -> LayerResult<usize> {
        let bad = |msg: String| invalid(format!("expression `{}`: {msg}", self.text));
        let mut stack = [Value::Int(0); MAX_TOKENS];
        let mut top = 0;
        for tok in self.tokens.iter().rev() {
            let v = match *tok {
                Token::Dim(k, axis) => {
                    let s = inputs.get(k).ok_or_else(|| {
                        bad(format!("reads input {k}, the layer has {}", inputs.len()))
                    })?;
                    let v = match axis {
                        Axis::W => s.w,
                        Axis::H => s.h,
                        Axis::D => s.d,
                        Axis::C => s.c,
                        Axis::N => 1,
                    };
                    Value::Int(v as i32)
                }
                Token::Value(v) => v,
                Token::Call(fun, arity) => {
                    // Checked at parse: the operands are there.
                    top -= arity;
                    let (a, b) = (stack[top + arity - 1], stack[top]);
                    apply(fun, a, if arity == 2 { b } else { Value::Int(0) })
                        .map_err(|m| bad(m.into()))?
                }
            };
            stack[top] = v;
            top += 1;
        }
        for (o, v) in out.iter_mut().zip(stack[..top].iter().rev()) {
            *o = v.to_int();
        }
        Ok(top)
    }
}

fn apply(fun: Fun, a: Value, b: Value) -> Result<Value, &'static str> {
    use Fun::*;
    use Value::{Float as F, Int as I};
    Ok(match fun {
        Add | Sub | Mul | FloorDiv | Max | Min => match (a, b) {
            (I(a), I(b)) => I(match fun {
                Add => a.wrapping_add(b),
                Sub => a.wrapping_sub(b),
                Mul => a.wrapping_mul(b),
                FloorDiv => {
                    if b == 0 {
                        return Err("integer division by zero");
                    }
                    a.wrapping_div(b)
                }
                Max => a.max(b),
                _ => a.min(b),
            }),
            _ => {
                let (a, b) = (a.f(), b.f());
                F(match fun {
                    Add => a + b,
                    Sub => a - b,
                    Mul => a * b,
                    FloorDiv => (a / b).floor(),
                    Max => {
                        if a < b {
                            b
                        } else {
                            a
                        }
                    }
                    _ => {
                        if b < a {
                            b
                        } else {
                            a
                        }
                    }
                })
            }
        },
        Div | Atan2 | Fmod | Pow | Remainder | LogAddExp => {
            let (a, b) = (a.f(), b.f());
            F(match fun {
                Div => a / b,
                Atan2 => a.atan2(b),
                Fmod => a % b,
                Pow => a.powf(b),
                Remainder => {
                    let r = a % b;
                    if a * b < 0.0 {
                        r + b
                    } else {
                        r
                    }
                }
                _ => {
                    if a.is_nan() {
                        a
                    } else if b.is_nan() {
                        b
                    } else if a.is_infinite() && a.to_bits() == b.to_bits() {
                        a
                    } else {
                        a.max(b) + (a.min(b) - a.max(b)).exp().ln_1p()
                    }
                }
            })
        }
        And | Or | Xor | Shl | Shr => {
            let (a, b) = (a.bits(), b.bits());
            I(match fun {
                And => a & b,
                Or => a | b,
                Xor => a ^ b,
                Shl => a.wrapping_shl(b as u32),
                _ => a.wrapping_shr(b as u32),
            })
        }
        Abs | Neg | Sign | Square => match a {
            I(a) => I(match fun {
                Abs => a.wrapping_abs(),
                Neg => a.wrapping_neg(),
                Sign => a.signum(),
                _ => a.wrapping_mul(a),
            }),
            F(a) => F(match fun {
                Abs => a.abs(),
                Neg => -a,
                Sign => {
                    if a > 0.0 {
                        1.0
                    } else if a == 0.0 {
                        0.0
                    } else {
                        -1.0
                    }
                }
                _ => a * a,
            }),
        },
        Trunc | Ceil | Floor | Round => match a {
            I(a) => I(a),
            F(a) => I(match fun {
                Trunc => a as i32,
                Ceil => a.ceil() as i32,
                Floor => a.floor() as i32,
                _ => a.round() as i32,
            }),
        },
        Float(f) => F(f(a.f())),
    })
}

/// Parses an optional string parameter as an expression (Crop's starts / ends / axes
/// expressions, keys 19 / 20 / 21, use this too): `None` when the key is absent or empty.
pub fn param(pd: &crate::model::paramdict::ParamDict, key: usize) -> LayerResult<Option<Expr>> {
    match pd.string(key)? {
        Some(s) if !s.is_empty() => Expr::parse(&s)
            .map(Some)
            .map_err(|e| invalid(format!("key {key}: {}", e.0))),
        _ => Ok(None),
    }
}

/// Evaluates an expression list on the layer's input shapes (for Crop and other ops that
/// take `starts` / `ends` / `axes` or sizes as expressions): the values in written order.
pub fn eval_list(expr: &Expr, inputs: &[Shape]) -> LayerResult<Vec<i32>> {
    expr.eval(inputs)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(text: &str, inputs: &[Shape]) -> Vec<i32> {
        Expr::parse(text).unwrap().eval(inputs).unwrap()
    }

    #[test]
    fn lists_and_dimensions() {
        let x = Shape::d3(5, 4, 3);
        assert_eq!(ev("0w,0h,0c", &[x]), vec![5, 4, 3]);
        assert_eq!(ev("0d,0n", &[x]), vec![1, 1]);
        assert_eq!(ev("*(0w,2),+(0h,1)", &[x]), vec![10, 5]);
        assert_eq!(ev("-(0w,7)", &[x]), vec![-2]);
        assert_eq!(ev("12,-1", &[x]), vec![12, -1]);
        let y = Shape::d4(2, 3, 4, 5);
        assert_eq!(ev("1d,*(1c,0w)", &[x, y]), vec![4, 25]);
        let e = Expr::parse("1w,0h").unwrap();
        assert_eq!((e.blob_count(), e.len()), (2, 2));
        assert_eq!(Expr::parse("3,4").unwrap().blob_count(), 0);
    }

    #[test]
    fn integer_and_float_arithmetic() {
        let x = Shape::d3(7, 4, 3);
        // Integer // truncates toward zero, float // floors.
        assert_eq!(ev("//(0w,2),//(-7,2),//(-7.5,2)", &[x]), vec![3, -3, -4]);
        // / is always float; results are truncated.
        assert_eq!(ev("/(0w,2),/(-7,2)", &[x]), vec![3, -3]);
        assert_eq!(
            ev("ceil(/(0w,2)),floor(/(-7,2)),round(2.5),round(-2.5)", &[x]),
            vec![4, -4, 3, -3]
        );
        assert_eq!(ev("trunc(-3.7),max(0w,9),min(0w,0h)", &[x]), vec![-3, 9, 4]);
        assert_eq!(ev("+(0w,0.5),*(2.5,2)", &[x]), vec![7, 5]);
        assert_eq!(
            ev("abs(-3),neg(0c),sign(-2),square(0h)", &[x]),
            vec![3, -3, -1, 16]
        );
        assert_eq!(
            ev("sqrt(16),pow(2,10),exp(0),log(1)", &[x]),
            vec![4, 1024, 1, 0]
        );
        assert_eq!(ev("fmod(7,3),remainder(-7,3)", &[x]), vec![1, 2]);
        assert_eq!(
            ev("and(6,3),or(4,1),xor(6,3),lshift(1,4),rshift(64,2)", &[x]),
            vec![2, 5, 5, 16, 16]
        );
        assert_eq!(ev("2.0,1e3, 3", &[x]), vec![2, 1000, 3]);
        assert_eq!(ev("*(erf(1),1000)", &[x]), vec![842]);
    }

    #[test]
    fn errors() {
        for bad in ["", "+(1)", "foo(1)", "0w,*", "1x"] {
            let e = Expr::parse(bad).unwrap_err();
            assert!(e.0.starts_with("expression `"), "{bad}: {}", e.0);
        }
        let e = Expr::parse("1w")
            .unwrap()
            .eval(&[Shape::d1(3)])
            .unwrap_err();
        assert!(e.0.contains("reads input 1"), "{}", e.0);
        let e = Expr::parse("//(3,0)").unwrap().eval(&[]).unwrap_err();
        assert!(e.0.contains("division by zero"), "{}", e.0);
    }
}
