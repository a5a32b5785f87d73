import Foundation

/// Minimal SVG charts for comparison reports: line charts (validation curves) and grouped bar
/// charts (expert usage per layer). Self-contained files that any browser shows.
public enum SVGChart {
    public struct Series {
        public var name: String
        public var points: [(x: Double, y: Double)]
        public init(name: String, points: [(x: Double, y: Double)]) {
            self.name = name
            self.points = points
        }
    }

    static let palette = ["#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#17becf"]
    static let (width, height) = (720.0, 420.0)
    static let (left, right, top, bottom) = (70.0, 170.0, 40.0, 50.0)

    /// "Nice" tick values covering `low ... high`.
    static func ticks(_ low: Double, _ high: Double, count: Int = 5) -> [Double] {
        guard high > low else { return [low] }
        let raw = (high - low) / Double(count)
        let magnitude = pow(10, floor(log10(raw)))
        let step = [1.0, 2, 2.5, 5, 10].map { $0 * magnitude }.first { $0 >= raw } ?? raw
        var values: [Double] = []
        var v = ceil(low / step) * step
        while v <= high + step * 1e-9 {
            values.append(v)
            v += step
        }
        return values
    }

    static func label(_ v: Double) -> String {
        if abs(v) >= 1000 || (v == v.rounded() && abs(v) >= 1) { return String(format: "%.0f", v) }
        if abs(v) >= 10 { return String(format: "%.1f", v) }
        return String(format: "%.3g", v)
    }

    static func escape(_ s: String) -> String {
        s.replacingOccurrences(of: "&", with: "&amp;").replacingOccurrences(of: "<", with: "&lt;").replacingOccurrences(of: ">", with: "&gt;")
    }

    static func frame(title: String, xLabel: String, yLabel: String, xTicks: [(Double, String)], yTicks: [(Double, String)]) -> [String] {
        let plotRight = width - right, plotBottom = height - bottom
        var svg = [
            "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"\(Int(width))\" height=\"\(Int(height))\" font-family=\"sans-serif\" font-size=\"12\">",
            "<rect width=\"100%\" height=\"100%\" fill=\"white\"/>",
            "<text x=\"\(width / 2)\" y=\"22\" text-anchor=\"middle\" font-size=\"15\">\(escape(title))</text>",
            "<line x1=\"\(left)\" y1=\"\(plotBottom)\" x2=\"\(plotRight)\" y2=\"\(plotBottom)\" stroke=\"black\"/>",
            "<line x1=\"\(left)\" y1=\"\(top)\" x2=\"\(left)\" y2=\"\(plotBottom)\" stroke=\"black\"/>",
            "<text x=\"\((left + plotRight) / 2)\" y=\"\(height - 12)\" text-anchor=\"middle\">\(escape(xLabel))</text>",
            "<text x=\"16\" y=\"\((top + plotBottom) / 2)\" text-anchor=\"middle\" transform=\"rotate(-90 16 \((top + plotBottom) / 2))\">\(escape(yLabel))</text>",
        ]
        for (x, text) in xTicks {
            svg.append("<line x1=\"\(x)\" y1=\"\(plotBottom)\" x2=\"\(x)\" y2=\"\(plotBottom + 5)\" stroke=\"black\"/>")
            svg.append("<text x=\"\(x)\" y=\"\(plotBottom + 18)\" text-anchor=\"middle\">\(text)</text>")
        }
        for (y, text) in yTicks {
            svg.append("<line x1=\"\(left)\" y1=\"\(y)\" x2=\"\(plotRight)\" y2=\"\(y)\" stroke=\"#dddddd\"/>")
            svg.append("<text x=\"\(left - 6)\" y=\"\(y + 4)\" text-anchor=\"end\">\(text)</text>")
        }
        return svg
    }

    static func legend(_ names: [String]) -> [String] {
        names.enumerated().flatMap { i, name -> [String] in
            let y = top + 10 + Double(i) * 20, x = width - right + 15
            return [
                "<rect x=\"\(x)\" y=\"\(y - 9)\" width=\"14\" height=\"10\" fill=\"\(palette[i % palette.count])\"/>",
                "<text x=\"\(x + 20)\" y=\"\(y)\">\(escape(name))</text>",
            ]
        }
    }

    /// A line chart of every series, axes fitted to the data.
    public static func lines(title: String, xLabel: String, yLabel: String, series: [Series]) -> String {
        let all = series.flatMap(\.points)
        guard !all.isEmpty else { return frame(title: title + " (no data)", xLabel: xLabel, yLabel: yLabel, xTicks: [], yTicks: []).joined(separator: "\n") + "\n</svg>\n" }
        let (x0, x1) = (all.map(\.x).min()!, all.map(\.x).max()!)
        var (y0, y1) = (all.map(\.y).min()!, all.map(\.y).max()!)
        if y1 - y0 < 1e-9 { (y0, y1) = (y0 - 0.5, y1 + 0.5) }
        let pad = (y1 - y0) * 0.05
        (y0, y1) = (y0 - pad, y1 + pad)
        let plotRight = width - right, plotBottom = height - bottom
        func px(_ x: Double) -> Double { x1 > x0 ? left + (x - x0) / (x1 - x0) * (plotRight - left) : (left + plotRight) / 2 }
        func py(_ y: Double) -> Double { plotBottom - (y - y0) / (y1 - y0) * (plotBottom - top) }
        var svg = frame(
            title: title, xLabel: xLabel, yLabel: yLabel,
            xTicks: ticks(x0, x1).map { (px($0), label($0)) }, yTicks: ticks(y0, y1).map { (py($0), label($0)) })
        for (i, s) in series.enumerated() {
            let color = palette[i % palette.count]
            let path = s.points.map { String(format: "%.1f,%.1f", px($0.x), py($0.y)) }.joined(separator: " ")
            svg.append("<polyline fill=\"none\" stroke=\"\(color)\" stroke-width=\"2\" points=\"\(path)\"/>")
            for p in s.points { svg.append(String(format: "<circle cx=\"%.1f\" cy=\"%.1f\" r=\"3\" fill=\"%@\"/>", px(p.x), py(p.y), color)) }
        }
        svg += legend(series.map(\.name))
        return svg.joined(separator: "\n") + "\n</svg>\n"
    }

    /// Grouped bars: one group per category, one bar per series (values at the same index).
    public static func bars(title: String, xLabel: String, yLabel: String, categories: [String], series: [(name: String, values: [Double])], yMaximum: Double? = nil) -> String {
        let maximum = yMaximum ?? max(1e-9, series.flatMap(\.values).max() ?? 1)
        let plotRight = width - right, plotBottom = height - bottom
        let groupWidth = (plotRight - left) / Double(max(1, categories.count))
        let barWidth = groupWidth * 0.8 / Double(max(1, series.count))
        func py(_ y: Double) -> Double { plotBottom - y / maximum * (plotBottom - top) }
        var svg = frame(
            title: title, xLabel: xLabel, yLabel: yLabel,
            xTicks: categories.enumerated().map { (left + (Double($0.offset) + 0.5) * groupWidth, escape($0.element)) },
            yTicks: ticks(0, maximum).map { (py($0), label($0)) })
        for (i, s) in series.enumerated() {
            for (c, value) in s.values.enumerated() where c < categories.count {
                let x = left + Double(c) * groupWidth + groupWidth * 0.1 + Double(i) * barWidth
                svg.append(String(format: "<rect x=\"%.1f\" y=\"%.1f\" width=\"%.1f\" height=\"%.1f\" fill=\"%@\"/>", x, py(value), barWidth, plotBottom - py(value), palette[i % palette.count]))
            }
        }
        svg += legend(series.map(\.name))
        return svg.joined(separator: "\n") + "\n</svg>\n"
    }
}
